"""segmentation and segmentation/colored against references written here from the network output (PyTorch's
bicubic upsample and argmax, as the official run_segmentation.py; PIL's Image.blend, as its write_segm_img), on
frames of odd sizes, mono8 included, with a live overlay_alpha change. Random dpt_hybrid_ade20k weights."""
import numpy as np
import pytest
import torch
from sensor_msgs.msg import Image

from dpt_ros import pipeline
from dpt_ros.ros import conversions
from dpt_ros.ros.testing import make_image, qos, set_params, wait_for

DOMAIN = 67


def _reference_labels(node, frame):
    """Official labels of ``frame``: the logits upsampled bicubically (torch, align_corners False) to the frame,
    argmax + 1; and a mask of the pixels whose two best classes are clear of float rounding."""
    rgb = pipeline.decode(conversions.image_view(frame), np)
    logits = node.models.segmentation.run(node.models.segmentation_pre(rgb))["logits"].float()
    up = torch.nn.functional.interpolate(logits, size=(frame.height, frame.width), mode="bicubic",
                                         align_corners=False)[0]
    top2 = up.topk(2, dim=0).values
    clear = (top2[0] - top2[1]).numpy() > 1e-4
    return (up.argmax(dim=0) + 1).numpy(), clear, rgb


def test_labels_and_overlay_match_the_official_post_processing_on_odd_frames(harness):
    PILImage = pytest.importorskip("PIL.Image", reason="Pillow writes the reference overlay")
    node = harness.start_node(**{"segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random",
                                 "segmentation.overlay_alpha": 0.3})
    names = ("segmentation", "segmentation/colored")
    got = {n: harness.collector(Image, n) for n in names}
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0
             and all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in names), what="discovery")
    cases = [(1, 83, 61, "rgb8", 0.3), (2, 47, 95, "mono8", 0.3), (3, 83, 61, "bgr8", 0.77)]
    for k, w, h, enc, alpha in cases:
        if alpha != node.settings["segmentation.overlay_alpha"]:
            assert set_params(harness, node, **{"segmentation.overlay_alpha": alpha})[0].successful
        frame = make_image(k, width=w, height=h, encoding=enc)
        pub.publish(frame)
        wait_for(lambda: all(any(m.header.stamp.nanosec == k for m in v) for v in got.values()), timeout=60,
                 what=f"outputs of frame {k}")
        m = {n: next(x for x in v if x.header.stamp.nanosec == k) for n, v in got.items()}
        labels = conversions.image_array(m["segmentation"])
        assert (m["segmentation"].encoding, labels.shape) == ("mono8", (h, w))
        want, clear, rgb = _reference_labels(node, frame)
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(labels[clear], want[clear])
        assert labels.min() >= 1 and labels.max() <= 150
        # the official overlay: palette (index = label) blended over the frame by PIL
        colour = PILImage.fromarray(labels, "P")
        colour.putpalette(pipeline.ADE20K_PALETTE.reshape(-1).tolist())
        base = PILImage.fromarray(np.ascontiguousarray(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, -1)))
        blended = np.asarray(PILImage.blend(base, colour.convert("RGB"), alpha))
        assert m["segmentation/colored"].encoding == "rgb8"
        np.testing.assert_array_equal(conversions.image_array(m["segmentation/colored"]), blended)
    assert node.settings["class_names"][13] == "person" and node.settings["class_names"][21] == "car"
    assert node.settings["class_names"][0] == "unlabeled" and len(node.settings["class_names"]) == 151


def test_segmentation_turned_on_and_off_under_a_stream(harness):
    """segmentation.variant set live on a depth node: from the swap on each frame has its labels (the official
    ones of the new model); set to '' again: inverse_depth goes on, segmentation stops."""
    node = harness.start_node()
    names = ("segmentation", "inverse_depth")
    got = {n: harness.collector(Image, n) for n in names}
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0
             and all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in names), what="discovery")

    def frame(k):
        msg = make_image(k, width=57, height=43, seed=k)
        pub.publish(msg)
        wait_for(lambda: any(m.header.stamp.nanosec == k for m in got["inverse_depth"]), timeout=60,
                 what=f"inverse_depth of frame {k}")
        return msg

    frame(1)
    assert set_params(harness, node, **{"segmentation.weights": "random",
                                        "segmentation.variant": "dpt_hybrid_ade20k"})[0].successful
    wait_for(lambda: node.models.segmentation is not None, timeout=60, what="the segmentation model")
    msg = frame(2)
    wait_for(lambda: any(m.header.stamp.nanosec == 2 for m in got["segmentation"]), what="labels of frame 2")
    labels = conversions.image_array(next(m for m in got["segmentation"] if m.header.stamp.nanosec == 2))
    want, clear, _ = _reference_labels(node, msg)
    np.testing.assert_array_equal(labels[clear], want[clear])
    assert set_params(harness, node, **{"segmentation.variant": ""})[0].successful
    wait_for(lambda: node.models.segmentation is None, timeout=60, what="segmentation off")
    frame(3)
    assert sorted(m.header.stamp.nanosec for m in got["segmentation"]) == [2]
    assert node.error_counts() == {} or not any(node.error_counts().values()), node.error_counts()
