"""Pre-processing against the official DPT recipe (float64 OpenCV INTER_CUBIC, (x - 0.5) / 0.5)."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpt_ros.pipeline import ImageView, Preprocessor, cupy_available, decode, network_input_size, resize_bicubic

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    ("hw", "net", "method", "expected"),
    [
        ((480, 640), 384, "minimal", (384, 512)),  # spec example
        ((1080, 1920), 384, "minimal", (384, 672)),
        ((375, 1242), (352, 1216), "minimal", (352, 1216)),  # KITTI
        ((480, 640), (480, 640), "minimal", (480, 640)),  # NYU
        ((384, 80), 384, "minimal", (384, 64)),  # 80/32 = 2.5 -> 2 (half to even)
        ((384, 112), 384, "minimal", (384, 128)),  # 112/32 = 3.5 -> 4
        ((480, 640), 384, "lower_bound", (384, 512)),
        ((480, 640), 384, "upper_bound", (288, 384)),
        ((480, 640), 384, "fixed", (384, 384)),
        ((100, 100), 480, "minimal", (480, 480)),
        ((10, 1000), 384, "minimal", (32, 384)),  # never below one multiple
        ((480, 320), 384, "minimal", (384, 256)),  # |1 - sw| == |1 - sh| (0.2): the official rule takes sh
        ((384, 380), 384, "upper_bound", (384, 384)),  # 380 rounds up to the bound itself: kept, not floored
        ((384, 390), 384, "lower_bound", (384, 384)),  # 390 rounds down to the bound itself: kept, not ceiled
        ((480, 640), (380, 500), "fixed", (384, 512)),  # each side still a multiple of 32
        ((400, 400), (410, 420), "upper_bound", (384, 416)),  # 410 rounds up to 416 > 410: floored; 416 <= 420 kept
        ((100, 100), (300, 200), "lower_bound", (320, 288)),  # 300 rounds down to 288 < 300: ceiled; 288 >= 200 kept
        ((480, 640), np.int64(384), "minimal", (384, 512)),  # a NumPy integer net size
    ],
)
def test_network_input_size(hw, net, method, expected):
    assert network_input_size(*hw, net, method) == expected


def test_network_input_size_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown resize method 'area'"):
        network_input_size(480, 640, 384, "area")
    with pytest.raises(ValueError, match="positive"):
        network_input_size(0, 640, 384)
    with pytest.raises(ValueError, match="image size must be positive; got 0x480"):
        network_input_size(480, 0, 384)
    with pytest.raises(ValueError, match="net_size"):
        network_input_size(480, 640, "big")
    with pytest.raises(ValueError, match=r"net_size must be positive; got \(384, 0\)"):
        network_input_size(480, 640, (384, 0))
    with pytest.raises(ValueError, match="multiple must be positive; got 0"):
        network_input_size(480, 640, 384, multiple=0)


def _official(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The official transform chain: RGB / 255 (float64), cv2 INTER_CUBIC, normalise, CHW float32."""
    img = rgb / 255.0
    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    img = (img - 0.5) / 0.5
    return np.ascontiguousarray(np.transpose(img, (2, 0, 1))).astype(np.float32)


@pytest.mark.parametrize("hw", [(480, 640), (101, 333), (37, 29), (720, 1280)])
def test_preprocessor_matches_official_pipeline(hw):
    rgb = RNG.integers(0, 256, (*hw, 3), dtype=np.uint8)
    pre = Preprocessor(384)
    t = pre(rgb)
    size = network_input_size(*hw, 384)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert tuple(t.shape) == (1, 3, *size) and t.device.type == "cpu"
    # OpenCV's float64 cubic path (official) and its float32 one (ours, = torch bicubic) differ by up
    # to ~0.02 grey levels when downscaling: 1.5e-4 after normalisation.
    np.testing.assert_allclose(t[0].numpy(), _official(rgb, size), atol=3e-4, rtol=0)
    official32 = _official(rgb.astype(np.float32), size)  # same recipe on float32
    np.testing.assert_allclose(t[0].numpy(), official32, atol=1e-5, rtol=0)
    assert pre.input_size(*hw) == size


def test_preprocessor_accepts_views_bgr_and_mono():
    """A bgr8 view (channels reversed, padded rows: resized as its bytes lie, put in RGB order after) and a mono8
    broadcast give what the same pixels give as a compact RGB array."""
    rgb = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pre = Preprocessor((64, 96))
    ref = pre(rgb)
    view = ImageView.from_array(rgb[:, :, ::-1], "bgr8", padding=3)
    torch.testing.assert_close(pre(view), ref, atol=0, rtol=0)
    gray = rgb[:, :, 0]
    mono = pre(ImageView.from_array(gray, "mono8", padding=1))
    torch.testing.assert_close(mono, pre(np.repeat(gray[:, :, None], 3, 2)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8"])
def test_preprocessor_takes_four_byte_frames_as_their_rgb(encoding):
    """An rgba8/bgra8 frame (padded rows, alpha anything) gives to the last bit what its RGB gives as a compact
    array (as the strided view itself gave, before OpenCV made the compact copy)."""
    rgb = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (60, 80, 1), dtype=np.uint8)
    stored = np.concatenate([rgb if encoding == "rgba8" else rgb[..., ::-1], alpha], 2)
    pre = Preprocessor((64, 96))
    view = ImageView.from_array(stored, encoding, padding=3)
    torch.testing.assert_close(pre(view), pre(rgb), atol=0, rtol=0)
    torch.testing.assert_close(pre(view), pre(np.ascontiguousarray(decode(view)).copy()), atol=0, rtol=0)


def test_preprocessor_scratch_buffers_change_no_result():
    """Pre-processing resizes in this thread's reused float buffers: frames of other sizes in turn (buffers grown,
    then read in part), colour and mono, each give to the last bit OpenCV's resize of its own float copy, normalised,
    and a returned tensor is not changed by the next frame's."""
    pre = Preprocessor((64, 96))
    frames = [RNG.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in ((60, 80), (150, 200), (33, 47))]
    frames.append(np.broadcast_to(frames[1][:, :, :1], frames[1].shape))   # a mono frame's broadcast view
    outs = []
    for rgb in frames * 2:
        h, w = pre.input_size(*rgb.shape[:2])
        mono = rgb.strides[2] == 0   # (its one plane resized: OpenCV's 3-channel resize rounds apart by 1 ulp)
        src = np.ascontiguousarray(rgb[:, :, 0] if mono else rgb).astype(np.float32)
        want = cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC)
        want = np.repeat(want[:, :, None], 3, 2) if mono else want
        want = torch.from_numpy(want.transpose(2, 0, 1) * np.float32(2.0 / 255.0) - np.float32(1.0))[None]
        outs.append((pre(rgb), want))
    for got, want in outs:
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_preprocessor_rejects_bad_frames_and_options():
    pre = Preprocessor(384)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        pre(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB image; got shape \(10, 10, 4\) dtype uint8"):
        pre(np.zeros((10, 10, 4), np.uint8))   # RGBA
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB image; got shape \(10, 10\) dtype uint8"):
        pre(np.zeros((10, 10), np.uint8))      # mono as a 2-D array
    with pytest.raises(ValueError, match="unknown resize method"):
        Preprocessor(384, method="nearest")
    with pytest.raises(ValueError, match="net_size must be positive"):
        Preprocessor(-32)
    with pytest.raises(ValueError, match="backend 'cupy' needs a CUDA device; got device cpu"):
        Preprocessor(384, device="cpu", backend="cupy")


@pytest.mark.parametrize(("src", "dst"), [((48, 64), (96, 128)), ((97, 131), (64, 64)), ((30, 40), (384, 512))])
def test_resize_bicubic_is_opencv_inter_cubic_and_torch_bicubic(src, dst):
    img = RNG.random((*src, 3)).astype(np.float32)
    out = resize_bicubic(img, dst)
    np.testing.assert_array_equal(out, cv2.resize(img, dst[::-1], interpolation=cv2.INTER_CUBIC))
    # Same kernel as torch's bicubic (a = -0.75, half-pixel, clamped border): the GPU path relies on it.
    ref = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], size=dst, mode="bicubic", align_corners=False)
    np.testing.assert_allclose(out, ref[0].permute(1, 2, 0).numpy(), atol=2e-5)


def test_resize_bicubic_keeps_the_shape_of_its_input():
    """(H, W) -> (h, w), (H, W, C) -> (h, w, C), also for C = 1 (OpenCV alone would drop that axis; the CuPy path
    keeps it, and callers index the channel)."""
    for shape, want in (((10, 12), (5, 6)), ((10, 12, 1), (5, 6, 1)), ((10, 12, 3), (5, 6, 3)), ((10, 12, 4), (5, 6, 4))):
        img = RNG.random(shape).astype(np.float32)
        out = resize_bicubic(img, (5, 6))
        assert out.shape == want, (shape, out.shape)
        np.testing.assert_array_equal(out.reshape(-1), cv2.resize(img, (6, 5), interpolation=cv2.INTER_CUBIC).reshape(-1))


def test_resize_bicubic_of_uint8_is_float32_without_clipping():
    """A uint8 image is resized in float32: OpenCV's uint8 path would round and clip the bicubic overshoot."""
    step = np.zeros((8, 8), np.uint8)
    step[:, 4:] = 255
    out = resize_bicubic(step, (8, 16))
    assert out.dtype == np.float32 and out.min() < -20 and out.max() > 275
    np.testing.assert_array_equal(out, cv2.resize(step.astype(np.float32), (16, 8), interpolation=cv2.INTER_CUBIC))


def test_cuda_device_without_usable_cupy_gets_the_numpy_backend():
    """A CUDA device where CuPy is missing or cannot load its kernels: OpenCV on the CPU, then one copy to
    the device (nothing touches CUDA while building)."""
    pre = Preprocessor(384, device="cuda:0")
    assert pre.backend == ("cupy" if cupy_available("cuda:0") else "numpy") and pre.device == torch.device("cuda:0")


def test_a_network_input_beyond_16x_the_network_size_is_refused_before_anything_is_allocated():
    """lower_bound brings the shorter side up to the network size: a 1x640 frame (1920 bytes of rgb8) would ask
    for a 384x245760 input (1 GB, 368 640 ViT tokens). More than MAX_INPUT_FACTOR times the network size's pixels
    is a ValueError that says what to do; a 16:1 panorama (exactly 16x) and the usual frames pass."""
    from dpt_ros.pipeline.preprocess import MAX_INPUT_FACTOR

    assert MAX_INPUT_FACTOR == 16
    pre = Preprocessor(384, "lower_bound")
    assert pre.input_size(480, 640) == (384, 512) and pre.input_size(24, 384) == (384, 6144)
    for h, w, net in ((1, 640, "384x245760"), (2, 4000, "384x768000"), (23, 384, "384x6400")):
        with pytest.raises(ValueError, match=f"a {w}x{h} image gives a {net} \\(height x width\\) network input with "
                                             "resize_method lower_bound at network size 384x384: more than 16x its "
                                             "pixels .* use resize_method minimal or upper_bound"):
            pre.input_size(h, w)
        with pytest.raises(ValueError, match="more than 16x"):
            pre(np.zeros((h, w, 3), np.uint8))
        assert Preprocessor(384, "minimal").input_size(h, w)[0] == 32   # the other rules stay bounded
        assert max(Preprocessor(384, "upper_bound").input_size(h, w)) <= 384
    # minimal keeps the scale whose factor is nearer 1: a 200x20000 strip stays 384 high (100x the pixels); the advice
    # is then the rule that bounds both sides, not minimal again
    with pytest.raises(ValueError, match=r"a 20000x200 image gives a 384x38400 .* resize_method minimal .* use "
                                         r"resize_method upper_bound \(no side above it\)$"):
        Preprocessor(384, "minimal").input_size(200, 20000)
    assert Preprocessor(384, "upper_bound").input_size(200, 20000) == (32, 384)
    # the resize_method description's example (README): the default minimal refuses a 480x9000 strip at 384; with its
    # shorter side under about half the network size it scales the long side instead
    with pytest.raises(ValueError, match=r"a 9000x480 image gives a 384x7200 .* resize_method minimal"):
        Preprocessor(384, "minimal").input_size(480, 9000)
    assert Preprocessor(384, "minimal").input_size(190, 5000) == (32, 384)


def test_input_size_answers_of_a_preprocessor_are_the_formulas_every_time_and_refusals_are_never_remembered():
    """The node asks a pre-processor for a frame's network size twice per frame; its answers are kept per frame
    size (at most 64), so they must stay network_input_size's for every method and size, asked in any order and
    again, and a refused size must be refused on every call (not once, then answered)."""
    rng = np.random.default_rng(5)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 3000, (150, 2))] + [(480, 640), (1080, 1920), (1, 640)]
    for method in ("minimal", "lower_bound", "upper_bound", "fixed"):
        pre = Preprocessor((384, 512), method)
        for round_ in range(2):
            for h, w in sizes if round_ == 0 else sizes[::-1]:
                want = network_input_size(h, w, (384, 512), method)
                if want[0] * want[1] > 16 * 384 * 512:
                    with pytest.raises(ValueError, match="more than 16x"):
                        pre.input_size(h, w)
                else:
                    assert pre.input_size(h, w) == want, (method, h, w)
                assert len(pre._sizes) <= 64
