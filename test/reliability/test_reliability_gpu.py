"""GPU reliability (skipped without CUDA): a REAL CUDA out-of-memory error (the caching allocator
refusing a 1 PiB request inside the forward) on two consecutive frames is counted and the third
frame is processed; GPU memory stays flat over 2,000 frames."""
import time

import pytest
import torch
from sensor_msgs.msg import Image

from dpt_ros.ros.testing import make_image, qos, wait_for
from dpt_ros.tools.bench_reliability import record

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

DOMAIN = 63   # 62 is test_reliability_security's DOMAIN + 2


def _setup(harness, **overrides):
    node = harness.start_node(device="cuda", **overrides)
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    return node, out, pub


def test_real_cuda_oom_on_two_frames_then_the_third_is_processed(harness):
    node, out, pub = _setup(harness)
    engine = node.models.depth
    block = next(m for n, m in engine.model.named_modules() if n.endswith("blocks.0"))
    left = [2]

    def hog(module, args):
        if left[0] > 0:
            left[0] -= 1
            torch.empty(1 << 50, dtype=torch.uint8, device=args[0].device)   # raises OutOfMemoryError

    hook = block.register_forward_pre_hook(hog)
    try:
        for i in (1, 2):
            pub.publish(make_image(i))
            wait_for(lambda: node.error_counts().get("cuda_oom", 0) == i, what=f"real OOM {i} counted")
        t0 = time.monotonic()
        pub.publish(make_image(3))
        wait_for(lambda: len(out) == 1, what="third frame")
    finally:
        hook.remove()
    assert out[0].header.stamp.nanosec == 3
    record("gpu", real_cuda_oom_counted=node.error_counts()["cuda_oom"],
           third_frame_after_real_oom_s=round(time.monotonic() - t0, 3), device=torch.cuda.get_device_name())


def test_gpu_memory_flat_over_2000_frames(harness):
    node, out, pub = _setup(harness, input_size=384)
    dev = node.models.device
    done = [0]
    harness.probe.create_subscription(Image, "inverse_depth", lambda m: done.__setitem__(0, done[0] + 1), qos())
    frame = make_image(0, 640, 480)
    warm = None
    for i in range(2000):
        if i == 200:
            torch.cuda.synchronize(dev)
            warm = (torch.cuda.memory_allocated(dev), torch.cuda.memory_reserved(dev))
        frame.header.stamp.sec, frame.header.stamp.nanosec = divmod((i + 1) * 1_000_000, 10**9)
        pub.publish(frame)
        wait_for(lambda: done[0] >= i + 1 - 1, timeout=10, what="output")
    wait_for(lambda: node.cameras[0].pending is None, what="drained")
    time.sleep(0.2)
    torch.cuda.synchronize(dev)
    end = (torch.cuda.memory_allocated(dev), torch.cuda.memory_reserved(dev))
    grow = [(e - w) / 2**20 for e, w in zip(end, warm)]
    record("gpu", frames=node.counts()[""]["processed"], allocated_growth_mib=round(grow[0], 2),
           reserved_growth_mib=round(grow[1], 2))
    assert grow[0] < 1.0 and grow[1] < 64.0, grow
