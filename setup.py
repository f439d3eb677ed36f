"""ament_python packaging for dpt_ros (colcon build / pip install)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dpt_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/sros2", glob("docs/sros2/*")),   # interface list + policy (sros2_policy tool)
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dpt_ros maintainers",
    maintainer_email="dpt-ros@example.org",
    description="DPT monocular depth and ADE20K segmentation node for ROS 2",
    license="MIT",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "dpt_node = dpt_ros.ros.console:dpt_node",
            "dpt_lifecycle_node = dpt_ros.ros.console:dpt_lifecycle_node",
            "sample_camera = dpt_ros.ros.console:sample_camera",
            "calibrate_depth = dpt_ros.tools.calibrate_depth:run",
            "dpt_predict = dpt_ros.ros.console:dpt_predict",
        ],
    },
)
