"""dpt_ros: DPT (Dense Prediction Transformer) depth and segmentation for ROS 2.

Layout (each layer only imports the ones above it):

- :mod:`dpt_ros.model`    -- PyTorch DPT, variant table, checkpoints, inference engine (no ROS).
- :mod:`dpt_ros.pipeline` -- array pre/post-processing, NumPy or CuPy (no ROS).
- :mod:`dpt_ros.ros`      -- rclpy node, parameters, message conversion, sample camera.
- :mod:`dpt_ros.tools`    -- demo, benchmarks, weights helper.
"""

__version__ = "0.1.0"
