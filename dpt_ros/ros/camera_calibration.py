"""Camera calibration files (``camera_info.url``): the YAML and INI that ROS's camera_calibration writes and
camera_info_manager reads, for cameras whose driver publishes no camera_info.

``load(url, camera)`` -> ``sensor_msgs/CameraInfo``. ``url``: ``file:///abs/path.yaml``,
``package://<package>/<path>`` (needs a ROS installation's ament_index) or a plain path; ``{camera}`` in it
is replaced by the camera's name (the last part of its namespace), for a node serving several cameras, and
``${ROS_HOME}`` by $ROS_HOME (~/.ros without it), as camera_info_manager does (its ``${NAME}``, the driver's camera
name, is refused with the reason).

The file (camera_calibration_parsers' YAML)::

    image_width: 640
    image_height: 480
    camera_name: webcam
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    projection_matrix: {rows: 3, cols: 4, data: [fx', 0, cx', 0, 0, fy', cy', 0, 0, 0, 1, 0]}

and, as camera_info_manager saves them, ``binning_x``, ``binning_y`` (0: none) and
``roi: {x_offset, y_offset, height, width, do_rectify}`` (all 0: the full image), which say what part of the
``image_width`` x ``image_height`` calibration the images are.

``rectification_matrix`` defaults to the identity, ``projection_matrix`` to K with a zero fourth column,
``distortion_coefficients`` to none, ``distortion_model`` to plumb_bob (as camera_calibration_parsers reads a file
written before CameraInfo had it), binning and ROI to none.

Or the INI (``.ini``; camera_calibration's ``ost.txt``), told by its first line that is not blank or a comment
(``#``, ``;``) being a ``[section]``: an ``[image]`` section with ``width`` and ``height``, each followed by its
number on the next line, and one camera section (``[webcam]``; a stereo file's two are refused: give one camera's)
with ``camera matrix`` (3 lines of 3 numbers), ``distortion`` (1 line: 5 numbers plumb_bob, 8
rational_polynomial; the format has no other model), ``rectification`` (3 x 3) and ``projection`` (3 x 4), each
followed by its numbers; ``[externals]`` is ignored. Missing parts default as in the YAML.
"""
from __future__ import annotations

import math
import os
import re
import stat
from typing import Any
from urllib.parse import unquote, urlparse

import yaml
from sensor_msgs.msg import CameraInfo

#: the most of a calibration file read (one is about 1 kB)
MAX_FILE_BYTES = 1 << 20
_HELP = ("a camera calibration YAML as ROS's camera_calibration writes it (image_width, image_height, "
         "camera_matrix, distortion_model, distortion_coefficients, rectification_matrix, projection_matrix), or its "
         "INI (ost.txt, starting with an [image] section)")


class CalibrationFileError(ValueError):
    """The calibration file cannot be found, read or understood (the message says which and why)."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers in exponent form without a dot or without the exponent's sign (1e-05,
    2.5E3) as numbers, as YAML 1.2 and yaml-cpp (camera_calibration_parsers' reader) do; YAML 1.1 took them for
    strings."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))


def resolve(url: str, camera: str = "") -> str:
    """The local path of ``url`` for ``camera`` (see the module)."""
    if "{camera}" in url:
        if not camera:
            raise CalibrationFileError(f"{url!r} has a {{camera}} placeholder, but this camera has no name (the "
                                       f"node's own namespace): name the cameras (cameras:=[left, right]) or give "
                                       f"one file")
        url = url.replace("{camera}", camera)
    # camera_info_manager's substitutions (its default URL is file://${ROS_HOME}/camera_info/${NAME}.yaml)
    if "${NAME}" in url:
        raise CalibrationFileError(f"{url!r}: ${{NAME}} is camera_info_manager's camera name (its driver's), which "
                                   f"this node does not know: write the file's name, or {{camera}} for each camera's "
                                   f"name (the last part of its namespace)")
    if "${ROS_HOME}" in url:
        url = url.replace("${ROS_HOME}", os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros"))
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme else url
        if parsed.scheme and parsed.netloc not in ("", "localhost"):
            raise CalibrationFileError(f"{url!r}: a file:// URL names a local file (file:///abs/path.yaml)")
        return os.path.expanduser(path)
    if parsed.scheme == "package":
        try:
            from ament_index_python.packages import (PackageNotFoundError,  # noqa: PLC0415
                                                     get_package_share_directory)
        except ImportError:
            raise CalibrationFileError(f"{url!r}: package:// URLs need a ROS installation (ament_index_python); "
                                       f"give a file:///abs/path.yaml instead") from None
        try:
            share = get_package_share_directory(parsed.netloc)
        except PackageNotFoundError:
            raise CalibrationFileError(f"{url!r}: package {parsed.netloc!r} is not installed (not in the ament "
                                       f"index: source its workspace)") from None
        except ValueError:   # (the index checks the name first: package:///x.yaml, package://my camera/x.yaml)
            raise CalibrationFileError(f"{url!r}: {parsed.netloc!r} is no package name (letters, digits, _ and -, "
                                       f"REP 127): write package://<package>/<path>, e.g. "
                                       f"package://my_camera/calibration/left.yaml") from None
        except (OSError, LookupError):   # no ament index at all: AMENT_PREFIX_PATH unset (no workspace sourced)
            raise CalibrationFileError(f"{url!r}: package:// URLs need a sourced ROS workspace (AMENT_PREFIX_PATH "
                                       f"is not set); source it, or give file:///abs/path.yaml") from None
        return os.path.join(share, unquote(parsed.path).lstrip("/"))
    raise CalibrationFileError(f"{url!r}: unsupported URL scheme {parsed.scheme!r}; use file:///abs/path.yaml, "
                               f"package://<package>/<path> or a plain path")


def load(url: str, camera: str = "") -> CameraInfo:
    """The CameraInfo in the calibration file at ``url`` (see the module); CalibrationFileError if it
    cannot be read or is not a usable calibration."""
    path = resolve(url, camera)
    try:
        # read where a parameter is set, on the executor's thread: a pipe or device would block or never end
        # there (and with it the node, its parameter services included), a huge file take its memory
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise CalibrationFileError(f"camera calibration {path!r} is not a regular file (a pipe, device or "
                                       f"folder?): give the path of a calibration YAML")
        if info.st_size > MAX_FILE_BYTES:
            raise CalibrationFileError(f"camera calibration {path!r} is {info.st_size} bytes: a calibration YAML "
                                       f"is a few kB (at most {MAX_FILE_BYTES} read); is it the right file?")
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:   # (a relative path is the node's folder's, which a ros2 param set cannot see)
        from dpt_ros.ros.params import relative_path_text  # noqa: PLC0415

        raise CalibrationFileError(f"cannot read camera calibration {path!r}: no such file"
                                   f"{relative_path_text(path)}: give the path of a calibration YAML "
                                   f"(file:///abs/path.yaml, package://<package>/<path> or a plain path), or '' "
                                   f"for the camera_info topic") from None
    except OSError as e:
        raise CalibrationFileError(f"cannot read camera calibration {path!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CalibrationFileError(f"camera calibration {path!r} is not text: give the path of a calibration "
                                   f"YAML") from None
    try:
        return parse(text)
    except CalibrationFileError as e:
        raise CalibrationFileError(f"{path}: {e}") from None


def parse(text: str) -> CameraInfo:
    """A CameraInfo from the text of a calibration YAML or INI (see the module)."""
    text = text.lstrip("\ufeff")   # (a byte order mark, as an editor may save it)
    if _is_ini(text):
        doc = _ini_document(text)
    else:
        try:
            doc = yaml.load(text, Loader=_Loader)   # noqa: S506 (a safe loader)
        except yaml.YAMLError as e:
            raise CalibrationFileError(f"not YAML ({str(e).splitlines()[0]}); expected {_HELP}") from None
        if not isinstance(doc, dict):
            raise CalibrationFileError(f"expected {_HELP}")
    msg = CameraInfo()
    for key in ("image_width", "image_height"):
        value = doc.get(key)
        if not _is_uint32(value) or value == 0:
            raise CalibrationFileError(f"{key} must be a positive integer; got {value!r} (expected {_HELP})")
    msg.width, msg.height = doc["image_width"], doc["image_height"]
    # binning and ROI of the image the calibration is for, as camera_info_manager saves them (0: none, full image)
    for key in ("binning_x", "binning_y"):
        value = doc.get(key, 0)
        if not _is_uint32(value):
            raise CalibrationFileError(f"{key} must be an integer >= 0 (0 or 1: no binning); got {value!r}")
        setattr(msg, key, value)
    roi = doc.get("roi")
    if roi is not None:
        if not isinstance(roi, dict):
            raise CalibrationFileError(f"roi must be a mapping with x_offset, y_offset, height, width and do_rectify; "
                                       f"got {roi!r}")
        for key in ("x_offset", "y_offset", "height", "width"):
            value = roi.get(key, 0)
            if not _is_uint32(value):
                raise CalibrationFileError(f"roi.{key} must be an integer >= 0 (all 0: the full image); got {value!r}")
            setattr(msg.roi, key, value)
        if not isinstance(roi.get("do_rectify", False), bool):
            raise CalibrationFileError(f"roi.do_rectify must be true or false; got {roi['do_rectify']!r}")
        msg.roi.do_rectify = roi.get("do_rectify", False)
    k = _matrix(doc, "camera_matrix", 3, 3, required=True)
    if not (k[0] > 0 and k[4] > 0):
        raise CalibrationFileError(f"camera_matrix has fx = {k[0]}, fy = {k[4]}: focal lengths must be > 0")
    msg.k = k
    msg.r = _matrix(doc, "rectification_matrix", 3, 3) or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = _matrix(doc, "projection_matrix", 3, 4) or [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    if "distortion_coefficients" in doc:
        d = doc["distortion_coefficients"]
        data = d.get("data") if isinstance(d, dict) else None
        msg.d = _numbers(data, "distortion_coefficients")
    # a file without one (written before CameraInfo had distortion_model) is plumb_bob, as camera_calibration_parsers
    # reads it
    model = doc.get("distortion_model", "plumb_bob")
    if not isinstance(model, str):
        raise CalibrationFileError(f"distortion_model must be a name such as plumb_bob; got {model!r}")
    msg.distortion_model = model
    return msg


_INI_HELP = ("a camera calibration INI as ROS's camera_calibration writes it (ost.txt: [image] with width and "
             "height, a [camera] section with camera matrix, distortion, rectification and projection)")


_INI_KEYS = frozenset(("width", "height", "camera matrix", "distortion", "rectification", "projection", "translation",
                       "rotation"))


def _ini_lines(text: str) -> list[str]:
    """The lines of an INI that say something: stripped, without blank and comment (``#``, ``;``) lines."""
    return [line for line in (raw.strip() for raw in text.splitlines()) if line and line[0] not in "#;"]


def _is_ini(text: str) -> bool:
    lines = _ini_lines(text)
    return bool(lines) and lines[0].startswith("[") and lines[0].endswith("]")


def _ini_document(text: str) -> dict:
    """The YAML document (as :func:`parse` reads it) that the INI ``text`` says the same as."""
    sections: list[tuple[str, list[str]]] = []
    for line in _ini_lines(text):
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip(), []))
        else:
            sections[-1][1].append(line)   # (the first line is a section: _is_ini)
    images = [lines for name, lines in sections if name == "image"]
    cameras = [(name, lines) for name, lines in sections if name not in ("image", "externals")]
    if not images:
        raise CalibrationFileError(f"INI calibration without an [image] section; expected {_INI_HELP}")
    if len(cameras) != 1:
        raise CalibrationFileError(
            f"INI calibration with {len(cameras)} camera sections "
            f"({', '.join(f'[{name}]' for name, _ in cameras) or 'none besides [image]'}); expected one camera's "
            f"({_INI_HELP}): for a stereo pair's file, give each camera its own file with its [image] and section "
            f"(camera_info.url with {{camera}})")
    doc: dict[str, Any] = {}
    image = images[-1]
    for key in ("width", "height"):
        rows = _ini_rows(image, key, "image", 1)
        try:
            doc[f"image_{key}"] = int(rows[0]) if rows is not None else None
        except ValueError:
            doc[f"image_{key}"] = rows[0]
        if not _is_uint32(doc[f"image_{key}"]) or doc[f"image_{key}"] == 0:
            raise CalibrationFileError(f"INI calibration: [image] needs {key} followed by a positive integer on the "
                                       f"next line; got {rows[0] if rows else None!r} (expected {_INI_HELP})")
    name, lines = cameras[0]
    doc["camera_name"] = name
    for key, yaml_key, rows, cols in (("camera matrix", "camera_matrix", 3, 3),
                                      ("rectification", "rectification_matrix", 3, 3),
                                      ("projection", "projection_matrix", 3, 4)):
        values = _ini_numbers(name, lines, key, rows, (cols,))
        if values is None and key == "camera matrix":
            raise CalibrationFileError(f"INI calibration: [{name}] has no camera matrix (expected {_INI_HELP})")
        if values is not None:
            doc[yaml_key] = {"rows": rows, "cols": cols, "data": values}
    d = _ini_numbers(name, lines, "distortion", 1, (5, 8))
    if d is not None:
        doc["distortion_model"] = "plumb_bob" if len(d) == 5 else "rational_polynomial"
        doc["distortion_coefficients"] = {"rows": 1, "cols": len(d), "data": d}
    return doc


def _ini_rows(lines: list[str], key: str, section: str, rows: int) -> list[str] | None:
    """The ``rows`` lines after the line ``key`` of ``section``; None without such a line."""
    if key not in lines:
        return None
    at = lines.index(key) + 1
    if len(lines) < at + rows or any(line in _INI_KEYS for line in lines[at:at + rows]):
        raise CalibrationFileError(f"INI calibration: [{section}] {key} must be followed by {rows} line(s) of "
                                   f"numbers; expected {_INI_HELP}")
    return lines[at:at + rows]


def _ini_numbers(section: str, lines: list[str], key: str, rows: int, cols: tuple[int, ...]) -> list[float] | None:
    """The numbers of ``key`` in ``section``: ``rows`` lines of one of ``cols`` numbers each; None without it."""
    found = _ini_rows(lines, key, section, rows)
    if found is None:
        return None
    values: list[float] = []
    for line in found:
        words = line.split()
        if len(words) not in cols:
            raise CalibrationFileError(f"INI calibration: [{section}] {key} has {len(words)} numbers in {line!r}; "
                                       f"expected {' or '.join(map(str, cols))} a line, {rows} line(s)" +
                                       ("; the INI format holds plumb_bob (5) and rational_polynomial (8) "
                                        "coefficients: for another lens model (equidistant: 4) use the YAML "
                                        "calibration (ost.yaml)" if key == "distortion" else ""))
        try:
            values += [float(w) for w in words]
        except ValueError:
            raise CalibrationFileError(f"INI calibration: [{section}] {key} has a word that is not a number in "
                                       f"{line!r}") from None
    return values


def _is_uint32(value: Any) -> bool:
    """``value`` is an integer that a CameraInfo's uint32 fields hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32


def _matrix(doc: dict, key: str, rows: int, cols: int, required: bool = False) -> list[float]:
    m = doc.get(key)
    if m is None and not required:
        return []
    if not isinstance(m, dict):
        raise CalibrationFileError(f"{key} must be a mapping with rows, cols and data ({rows}x{cols}); got {m!r}")
    if (m.get("rows"), m.get("cols")) != (rows, cols):
        raise CalibrationFileError(f"{key} must be {rows}x{cols}; the file says rows {m.get('rows')!r}, cols "
                                   f"{m.get('cols')!r}")
    data = _numbers(m.get("data"), key)
    if len(data) != rows * cols:
        raise CalibrationFileError(f"{key} has {len(data)} values in data; a {rows}x{cols} matrix has {rows * cols}")
    return data


def _numbers(data: Any, key: str) -> list[float]:
    if not isinstance(data, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        raise CalibrationFileError(f"{key}.data must be a list of numbers; got {data!r}")
    values = [float(v) for v in data]
    if not all(math.isfinite(v) for v in values):
        raise CalibrationFileError(f"{key}.data has a value that is not finite: {data!r}")
    return values
