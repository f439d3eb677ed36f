"""dpt_node on a CUDA device (skipped without one): fp16, CUDA graphs, GPU pre-processing."""
import numpy as np
import pytest
import torch
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros.ros import conversions
from dpt_ros.ros.testing import make_image, make_info, qos, wait_for

DOMAIN = 46
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("precision,graphs", [("fp32", False), ("fp16", True)])
def test_cuda_node_publishes_all_depth_outputs(harness, precision, graphs):
    node = harness.start_node(device="cuda", precision=precision, cuda_graphs=graphs,
                              **{"depth.scale": 1.0, "depth.shift": 0.5, "camera_info.policy": "latest"})
    assert node.models.device.type == "cuda"
    got = {n: harness.collector(t, n) for n, t in
           (("inverse_depth", Image), ("depth", Image), ("points", PointCloud2), ("inverse_depth/colored", Image))}
    pub = harness.probe.create_publisher(Image, "image", qos())
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in got), what="discovery")
    img = make_image(0, width=160, height=120)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info")
    for i in range(1, 6):
        pub.publish(make_image(i, width=160, height=120))
        wait_for(lambda: all(len(v) >= i for v in got.values()), timeout=60, what=f"frame {i}")
    inv = conversions.image_array(got["inverse_depth"][-1])
    assert inv.shape == (120, 160) and np.isfinite(inv).all()
    assert got["points"][-1].width == 80
    diag = node.diagnostics()
    model = {v.key: v.value for v in diag.status[0].values}
    assert float(model["gpu_memory_allocated_mb"]) > 0
    assert node.error_counts() == {}
