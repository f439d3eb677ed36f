"""Array pipeline between ``sensor_msgs`` buffers and the DPT model (NumPy on CPU, CuPy on GPU).

No ROS and no model imports: the ROS layer builds an :class:`ImageView` from message fields and
wraps the buffers returned here; the model layer exchanges torch tensors only.

Backend: one switch, ``"numpy"`` or ``"cupy"`` (:func:`get_xp`); CuPy is imported lazily and is
picked automatically by :class:`Preprocessor` for a CUDA device; the post-processing functions work
where their input is (a CUDA tensor, a CuPy array: :func:`array_module`), on the GPU on torch's current stream of
its device, where the model's output was queued: no synchronisation between PyTorch and CuPy is needed.

Decoding (:mod:`.encodings`)
    ``ImageView(data, encoding, height, width, step, is_bigendian)``; ``ImageView.from_array``
    packs an array into message layout. ``decode(view, xp) -> (H, W, 3) uint8 RGB``
    (zero-copy views for rgb8/bgr8/rgba8/bgra8/8UC3/8UC4 on NumPy; broadcast view for mono).
    ``decode_compressed(data, format) -> (H, W, 3) uint8 RGB`` (jpeg, png; a JPEG cut short decoded as far as it
    goes, the rest grey: ``jpeg_truncated(data)`` says so); ``decode_compressed_frame(data, format) ->
    DecodedImage(rgb, truncated)`` says it from the same look at the data; ``read_image_file(path)`` (RGB),
    ``IMAGE_FILE_EXTENSIONS``.
    ``SUPPORTED_ENCODINGS``, ``SUPPORTED_COMPRESSED_FORMATS``; ``EncodingError(ValueError)`` names
    the encoding, what was wrong and the supported list. Sizes are checked before any allocation
    (``len(data) == step * height``, ``step >= width * bpp``, sides <= ``MAX_SIDE``).

Pre-processing (:mod:`.preprocess`)
    ``network_input_size(height, width, net_size, method="minimal", multiple=32) -> (h, w)``;
    ``Preprocessor(net_size, method="minimal", device="cpu", backend=None)``:
    ``pre(rgb_or_view) -> torch.Tensor (1, 3, h, w) float32`` normalised ``(x - 0.5) / 0.5`` on
    ``device``; ``pre.input_size(H, W)``; ``pre.upload(rgb)`` -> the frame on the pre-processor's
    device (CuPy backend; else unchanged), to share one upload with ``build_cloud(rgb=...)``.
    ``resize_bicubic(img, (h, w))`` (OpenCV INTER_CUBIC).

Post-processing (:mod:`.postprocess`, :mod:`.colormap`, :mod:`.ade20k`)
    ``upsample(tensor, (H, W))`` bicubic, align_corners=False (N,h,w) or (N,C,h,w);
    ``metric_from_inverse(inv, scale, shift)`` = 1 / max(scale * inv + shift, 1e-8);
    ``apply_depth_range(depth, min_depth, max_depth)`` -> REP 117 (NaN / -inf / +inf);
    ``drop_depth_edges(depth, max_jump)`` (torch) -> NaN where a neighbour's depth jumps (for clouds);
    ``drop_labels(depth, labels, label_values)`` (torch) -> NaN where the label is one of them (for clouds);
    ``depth_to_millimetres(depth)`` -> 16UC1 (0 invalid); ``metres_from_millimetres(mm)`` -> its readers' metres;
    ``colorize(values, colormap, vmin, vmax)`` -> (H, W, 3) uint8 RGB, ``COLORMAPS``,
    ``colormap_lut(name)``; ``RunningRange(low=2, high=98, momentum=0.9).update(values)`` ->
    smoothed (vmin, vmax); ``labels_from_logits(logits)`` -> labels 1..C (0 = unlabeled);
    ``upsampled_labels(logits, (H, W))`` = labels of the upsampled logits (on the CPU class by class);
    ``colorize_labels(labels, palette)``; ``overlay(rgb, color, alpha=0.5)``;
    ``ADE20K_CLASSES`` (150 names, label k -> ``ADE20K_CLASSES[k-1]``), ``ADE20K_PALETTE``
    ((151, 3) uint8, row 0 black); ``tensor_to_array(t)`` (NumPy / CuPy zero-copy view).

Metric calibration (:mod:`.calibration`)
    ``calibrate([(inverse_depth, reference_metres), ...], min_depth, max_depth, stride, trim) ->
    Calibration`` (``scale``, ``shift`` for ``depth = 1 / (scale * inv + shift)``, ``median_abs_rel``,
    ``frame_scale_spread``); ``fit_scale_shift(x, y, trim)``; ``inverse_depth_pairs(inv, ref, min, max,
    stride) -> (x, y)``; ``reference_to_size(ref, (H, W))`` (nearest); ``depth_errors([(depth, reference), ...]) ->
    DepthErrors`` (AbsRel median / mean, RMSE, delta < 1.25); ``CalibrationFitError(ValueError)``.

Compressed outputs (:mod:`.compression`), as image_transport's plugins write them
    ``compress_image(values, encoding, codec, jpeg_quality, png_level) -> (format, data)`` (the
    ``compressed`` plugin: rgb8 / mono8 JPEG or PNG, mono16 PNG); ``compress_depth(depth, encoding,
    depth_max, quantization, png_level) -> (format, data)`` (``compressedDepth``: 32FC1 quantised in
    inverse depth, 16UC1 as is); ``depth_quantization(depth_max, quantization)``; ``decompress_depth(data,
    format) -> (encoding, depth)`` (a ``compressedDepth`` message read back: 32FC1 metres, 16UC1 millimetres).

Point clouds (:mod:`.cloud`)
    ``Intrinsics(fx, fy, cx, cy, width, height, distortion_model="", d=())``,
    ``Intrinsics.from_camera_info(k, p, width, height, binning_x, binning_y, roi, rectified,
    distortion_model, d)`` (``CalibrationError`` for K[0] == 0, an unsupported lens model etc.; the
    distortion is kept for unrectified images only), ``.scaled_to(w, h)``, ``.camera_info_matrices()``;
    lens models, their inverse and per-pixel rays in :mod:`.distortion`;
    ``build_cloud(depth, intrinsics, rgb=None, labels=None, stride=1, organized=True,
    reuse_buffer=False) -> CloudBuffer`` with ``data`` (array.array('B'): ``msg.data = cloud.data``
    without a copy; with ``reuse_buffer`` a view of a buffer the next call on the thread reuses, pinned on the GPU),
    ``height``, ``width``, ``point_step``, ``row_step``, ``fields`` (``PointField(name, offset,
    datatype, count)``), ``is_dense``, ``is_bigendian`` (False); ``cloud.points`` float32 view.
"""

from dpt_ros.pipeline._backend import (
    BACKENDS,
    BackendError,
    array_module,
    backend_for_device,
    cupy_available,
    cupy_unavailable_reason,
    get_xp,
    is_out_of_memory,
    is_unrecoverable_device_error,
    release_cached_memory,
    to_numpy,
)
from dpt_ros.pipeline.ade20k import ADE20K_CLASSES, ADE20K_PALETTE
from dpt_ros.pipeline.cloud import (
    FLOAT32,
    UINT32,
    CalibrationError,
    CloudBuffer,
    Intrinsics,
    PointField,
    UncalibratedError,
    build_cloud,
    cloud_fields,
)
from dpt_ros.pipeline.compression import compress_depth, compress_image, decompress_depth, depth_quantization
from dpt_ros.pipeline.colormap import COLORMAPS, RunningRange, colorize, colormap_lut
from dpt_ros.pipeline.encodings import (
    MAX_SIDE,
    SUPPORTED_COMPRESSED_FORMATS,
    SUPPORTED_ENCODINGS,
    EncodingError,
    ImageView,
    check_view,
    decode,
    decode_compressed,
    decode_compressed_frame,
    DecodedImage,
    jpeg_truncated,
    IMAGE_FILE_EXTENSIONS,
    read_image_file,
)
from dpt_ros.pipeline.calibration import (MAX_REFERENCE_M, MIN_FIT_PIXELS, Calibration, CalibrationFitError,
                                          DepthErrors, calibrate, depth_errors, fit_scale_shift, inverse_depth_pairs,
                                          reference_to_size)
from dpt_ros.pipeline.postprocess import (
    apply_depth_range,
    colorize_labels,
    depth_to_millimetres,
    drop_depth_edges,
    drop_labels,
    labels_from_logits,
    metres_from_millimetres,
    metric_from_inverse,
    overlay,
    tensor_to_array,
    upsample,
    upsampled_labels,
)
from dpt_ros.pipeline.preprocess import (
    RESIZE_METHODS,
    Preprocessor,
    network_input_size,
    resize_bicubic,
)

__all__ = [
    "ADE20K_CLASSES", "ADE20K_PALETTE", "BACKENDS", "COLORMAPS", "FLOAT32", "MAX_REFERENCE_M", "MAX_SIDE",
    "MIN_FIT_PIXELS",
    "RESIZE_METHODS", "SUPPORTED_COMPRESSED_FORMATS", "SUPPORTED_ENCODINGS", "UINT32",
    "BackendError", "Calibration", "CalibrationError", "CalibrationFitError", "CloudBuffer", "DepthErrors", "EncodingError", "ImageView", "Intrinsics",
    "PointField", "Preprocessor", "RunningRange", "UncalibratedError",
    "apply_depth_range", "array_module", "drop_depth_edges", "drop_labels", "inverse_depth_pairs", "reference_to_size", "backend_for_device", "build_cloud", "calibrate", "check_view", "cloud_fields",
    "colorize", "colorize_labels", "colormap_lut", "compress_depth", "compress_image", "decompress_depth", "depth_quantization", "cupy_available", "cupy_unavailable_reason", "decode",
    "decode_compressed", "decode_compressed_frame", "DecodedImage", "jpeg_truncated", "IMAGE_FILE_EXTENSIONS", "read_image_file", "depth_errors", "depth_to_millimetres", "fit_scale_shift", "get_xp", "is_out_of_memory", "is_unrecoverable_device_error", "labels_from_logits", "metres_from_millimetres", "metric_from_inverse",
    "network_input_size", "overlay", "release_cached_memory", "resize_bicubic", "tensor_to_array", "to_numpy", "upsample", "upsampled_labels",
]
