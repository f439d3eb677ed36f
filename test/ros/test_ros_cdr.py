"""Reading serialized Image / CompressedImage bytes (what the node's raw subscriptions receive).

Checked against rclpy's own serializer for every alignment of the variable-length strings, and
against an independent big-endian writer in this file; truncated buffers raise a CdrError naming
the field.
"""
import array
import struct

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dpt_ros import pipeline
from dpt_ros.ros import conversions


def _header(frame_id: str, sec: int = 1_700_000_000, nanosec: int = 123_456_789) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _image(frame_id="cam", encoding="rgb8", width=5, height=3, padding=1, bigendian=0, sec=7, nanosec=9):
    step = width * 3 + padding
    data = array.array("B", (np.arange(step * height) % 253).astype(np.uint8).tobytes())
    return Image(header=_header(frame_id, sec, nanosec), height=height, width=width, encoding=encoding,
                 is_bigendian=bigendian, step=step, data=data)


def _write_cdr(msg: Image, order: str) -> bytes:
    """Plain CDR of an Image written field by field (independent of the reader under test)."""
    out = bytearray(b"\x00\x00\x00\x00" if order == ">" else b"\x00\x01\x00\x00")

    def align4():
        out.extend(b"\x00" * (-(len(out) - 4) % 4))

    def u32(v):
        align4()
        out.extend(struct.pack(order + "I", v))

    def string(s):
        raw = s.encode() + b"\x00"
        u32(len(raw))
        out.extend(raw)

    u32(msg.header.stamp.sec & 0xFFFFFFFF)
    u32(msg.header.stamp.nanosec)
    string(msg.header.frame_id)
    u32(msg.height)
    u32(msg.width)
    string(msg.encoding)
    out.append(msg.is_bigendian)
    u32(msg.step)
    u32(len(msg.data))
    out.extend(bytes(msg.data))
    return bytes(out)


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "camera_optical_frame", "kamera_ø"])
@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "bayer_rggb8", ""])
def test_image_fields_match_rclpy_for_every_alignment(frame_id, encoding):
    msg = _image(frame_id, encoding, bigendian=1, sec=-3, nanosec=999_999_999)
    buf = serialize_message(msg)
    header, view = conversions.image_from_cdr(buf)
    assert header == msg.header
    assert (view.encoding, view.height, view.width, view.step, view.is_bigendian) == (encoding, 3, 5, 16, True)
    assert view.data.tobytes() == bytes(msg.data)
    assert np.shares_memory(view.data, np.frombuffer(buf, np.uint8))   # a view into the received bytes


def test_independent_writer_agrees_with_rclpy_and_big_endian_reads_the_same():
    msg = _image("optical", "bgr8", width=7, height=4, padding=3)
    little = _write_cdr(msg, "<")
    # the writer above is a faithful plain-CDR writer (rclpy's padding bytes are not zeroed: compare
    # lengths and what rclpy reads back)
    assert len(little) == len(serialize_message(msg)) and deserialize_message(little, Image) == msg
    big = _write_cdr(msg, ">")
    assert big != little
    (hl, vl), (hb, vb) = conversions.image_from_cdr(little), conversions.image_from_cdr(big)
    assert hl == hb == msg.header
    assert (vb.encoding, vb.width, vb.height, vb.step) == ("bgr8", 7, 4, 24)
    np.testing.assert_array_equal(pipeline.decode(vb, np), pipeline.decode(vl, np))


def test_xcdr2_plain_encapsulation_has_the_same_layout():
    msg = _image("xcdr2")
    buf = bytearray(serialize_message(msg))
    buf[1] = 0x07                                     # PLAIN_CDR2, little endian
    header, view = conversions.image_from_cdr(bytes(buf))
    assert header == msg.header and view.data.tobytes() == bytes(msg.data)


def test_empty_payload_and_large_frame():
    msg = Image(header=_header("e"), encoding="rgb8")
    header, view = conversions.image_from_cdr(serialize_message(msg))
    assert header.frame_id == "e" and view.data.size == 0 and (view.height, view.width) == (0, 0)
    rgb = (np.arange(1080 * 1920 * 3) % 255).astype(np.uint8).reshape(1080, 1920, 3)
    big = Image(header=_header("hd"), height=1080, width=1920, encoding="rgb8", step=5760)
    big.data = array.array("B", rgb.tobytes())
    _, view = conversions.image_from_cdr(serialize_message(big))
    np.testing.assert_array_equal(pipeline.decode(view, np), rgb)


def test_compressed_image_fields_match_rclpy():
    for frame_id in ("", "abc", "camera"):
        msg = CompressedImage(header=_header(frame_id, 5, 6), format="rgb8; jpeg compressed bgr8",
                              data=array.array("B", b"\xff\xd8\xff\xe0 not really a jpeg"))
        buf = serialize_message(msg)
        header, data, fmt = conversions.compressed_from_cdr(buf)
        assert header == msg.header and fmt == msg.format and data.tobytes() == bytes(msg.data)
        assert np.shares_memory(data, np.frombuffer(buf, np.uint8))


def test_truncated_buffers_name_the_field():
    buf = serialize_message(_image("camera_optical_frame", width=4, height=2, padding=0))
    n = len(buf)
    data_len_at = n - 24 - 4
    cases = [(n - 1, "data needs 24 bytes"), (data_len_at + 2, "data length needs 4 bytes"),
             (54, "encoding needs 5 bytes"), (46, "width"), (30, "header.frame_id needs 21 bytes"), (6, "header.stamp.sec")]
    for cut, key in cases:
        with pytest.raises(conversions.CdrError, match="truncated or corrupt") as e:
            conversions.image_from_cdr(buf[:cut])
        assert key in str(e.value), (cut, str(e.value))
        assert "sensor_msgs/Image" in str(e.value)
    # a data length larger than the message: rejected before anything is read
    lying = bytearray(buf)
    lying[data_len_at:data_len_at + 4] = struct.pack("<I", 2 ** 31)
    with pytest.raises(conversions.CdrError, match=r"data needs 2147483648 bytes"):
        conversions.image_from_cdr(bytes(lying))
    with pytest.raises(conversions.CdrError, match="sensor_msgs/CompressedImage"):
        conversions.compressed_from_cdr(serialize_message(CompressedImage(format="jpeg"))[:-3])
