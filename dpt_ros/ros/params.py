"""The node's parameter table: one declaration per parameter, validation, settings snapshots.

Every parameter the node accepts is one :class:`ParamSpec` row in :data:`PARAMETERS`. The node turns
the rows into ``ParameterDescriptor``s, validates every change with :func:`validate`, and swaps in an
immutable :class:`Settings` snapshot; the worker thread reads one snapshot per frame.

``apply`` says when a change takes effect:

- ``live``: post-processing, applies from the next frame;
- ``model``: builds new engines in the background and swaps them in between frames;
- ``configure``: what the node's topics are made of (camera list, QoS, compressed outputs): read-only on
  ``dpt_node``, fixed at start-up; on the managed ``dpt_lifecycle_node`` settable while it is unconfigured
  and applied by the next configure transition;
- ``static``: read-only, fixed at start-up (``class_names``, a report).
"""
from __future__ import annotations

import ast
import difflib
import functools
import json
import math
import os
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Literal, Mapping, Optional

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

import dpt_ros
from dpt_ros import PRECISIONS, cuda_missing  # (the precision names, which the tools import from here too; why no CUDA)
from dpt_ros.ros import topics

Apply = Literal["live", "model", "configure", "static"]

RANDOM_WEIGHTS = "random"
RELIABILITIES = ("best_effort", "reliable")
DURABILITIES = ("volatile", "transient_local")
RESIZE_METHODS = ("minimal", "lower_bound", "upper_bound", "fixed")  # = pipeline.RESIZE_METHODS
CAMERA_INFO_POLICIES = ("exact", "nearest", "latest")
COLORMAP_RANGES = ("running", "fixed")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
IMAGE_TRANSPORTS = ("raw", "compressed")
COLOR_SOURCES = ("image", "segmentation")
# (fullmatch, ASCII digits, no leading zero: exactly the names of these forms torch.device takes, and with it the
# model's check_target; '^...$' with \d let 'cpu\n', 'auto\n', 'cuda:01' and 'cuda:<non-ASCII digit>' through here,
# for the model's load to fail on them with torch's "Invalid device string")
_DEVICE_RE = re.compile(r"auto|cpu|cuda|cuda:(?:0|[1-9][0-9]*)", re.ASCII)

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, type (from the default), description, constraints and when it applies."""

    name: str
    default: Any
    description: str
    apply: Apply = "live"
    choices: Optional[tuple[str, ...]] = None
    int_range: Optional[tuple[int, int, int]] = None
    float_range: Optional[tuple[float, float]] = None
    check: Optional[Callable[[Any], Optional[str]]] = None
    zero: Optional[str] = None   # what 0 stands for where it is no value like the others (input_size: the variant's)

    @property
    def type(self) -> type:
        return type(self.default)

    def listed_choices(self) -> Optional[tuple[str, ...]]:
        """The closed set of values, for descriptions and docs (colour maps come from the pipeline,
        imported only when asked for: launch files import this module without torch)."""
        return _colormap_names() if self.name == "colormap" else self.choices

    def read_only(self, managed: bool = False) -> bool:
        """Whether rclpy refuses every change (``managed``: on the lifecycle node, where ``configure``
        parameters can be set while it is unconfigured)."""
        return self.apply == "static" or (self.apply == "configure" and not managed)

    def descriptor(self, managed: bool = False) -> ParameterDescriptor:
        """The ``ParameterDescriptor`` that rclpy enforces (type, ranges, read_only) on the plain node, or on
        the managed (lifecycle) node with ``managed``."""
        text = self.description
        choices = self.listed_choices()
        if choices is not None:
            text += " Choices: " + ", ".join(repr(c) for c in choices) + "."
        text += {
            "live": " Applies from the next frame.",
            "model": (" Changing it while the node is configured (inactive or active) loads the model again in the "
                      "background; unconfigured, it is checked and the next configure transition loads it."
                      if managed else " Changing it loads the model again in the background."),
            "configure": (" Set it while the node is unconfigured (refused while inactive or active); the next "
                          "configure transition applies it." if managed else " Read-only (fixed at start-up)."),
            "static": " Read-only (fixed at start-up).",
        }[self.apply]
        d = ParameterDescriptor(
            name=self.name, type=_TYPES[self.type], description=text,
            read_only=self.read_only(managed))
        if choices is not None:
            d.additional_constraints = "one of: " + ", ".join(choices)
        if self.int_range is not None:
            lo, hi, step = self.int_range
            d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step)]
        if self.float_range is not None:
            lo, hi = self.float_range
            d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
        return d


_TYPE_WORDS = {ParameterType.PARAMETER_BOOL: "a bool", ParameterType.PARAMETER_INTEGER: "an integer",
               ParameterType.PARAMETER_DOUBLE: "a double", ParameterType.PARAMETER_STRING: "a string",
               ParameterType.PARAMETER_BYTE_ARRAY: "a byte array", ParameterType.PARAMETER_BOOL_ARRAY: "a bool array",
               ParameterType.PARAMETER_INTEGER_ARRAY: "an integer array",
               ParameterType.PARAMETER_DOUBLE_ARRAY: "a double array",
               ParameterType.PARAMETER_STRING_ARRAY: "a string array"}


_ARRAYS = (ParameterType.PARAMETER_BYTE_ARRAY, ParameterType.PARAMETER_BOOL_ARRAY,
           ParameterType.PARAMETER_INTEGER_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY)


def read_only_reason(name: str, managed: bool, node: str = "dpt_node") -> str:
    """Why ``name`` cannot be set on a running node, and where it can be given instead."""
    spec = SPECS[name]
    if spec.apply == "configure" and not managed:
        return (f"{name} is read-only on {node}: give it at start-up (--ros-args -p {name}:=..., a params file), or "
                f"run dpt_lifecycle_node, where it can be set while unconfigured")
    if name == "class_names":
        return "class_names is read-only: it reports the segmentation classes (set segmentation.variant instead)"
    return f"{name} is read-only: give it at start-up (--ros-args -p {name}:=..., a params file)"


def unset_refusal(name: str, node: str) -> str:
    """Why parameter ``name`` of node ``node`` (fully qualified) cannot be unset (a value of no type, NOT_SET), with
    the ``ros2 param set`` command that gives it its default instead (rclpy says only "Static parameter cannot be
    undeclared")."""
    default = SPECS[name].default
    return (f"{name} cannot be unset: give it a value, e.g. its default: "
            f"{_written(name, [yaml_value(default)], 'set', node)}")


def type_mismatch(name: str, type_: int, value: Any, node: str) -> Optional[str]:
    """Why a value of ParameterType ``type_`` cannot be set as parameter ``name`` (None when the type is right or
    the name is not in the table), with the ``ros2 param set`` command for node ``node`` (fully qualified) that sets
    a value of the right type where one can be told (:func:`_written`). rclpy's own refusal names only type numbers
    ("expected '3' got '2'"), and ``ros2 param set`` reads 2 as an integer, a common way to miss a double."""
    spec = SPECS.get(name)
    want = _TYPES[spec.type] if spec is not None else None
    if want is None or type_ in (want, ParameterType.PARAMETER_NOT_SET):
        return None
    got = _TYPE_WORDS.get(type_, f"a value of parameter type {type_}")
    reason = f"{name} is {_TYPE_WORDS[want]}; got {got} ({shown(value)})"
    if want == ParameterType.PARAMETER_DOUBLE and type_ == ParameterType.PARAMETER_INTEGER:
        how, values = "write it with a decimal point,", [yaml_value(float(value))]
    elif want == ParameterType.PARAMETER_DOUBLE and type_ == ParameterType.PARAMETER_STRING:
        number = _float_or_none(value)
        how, values = (("a number, unquoted and with a decimal point,", [yaml_value(number)]) if number is not None
                       else ("a number, unquoted, e.g.", [yaml_value(spec.default)]))
        if number is not None and "." not in value and value == str(number):
            # `ros2 param load` of a dump's `depth.shift: 1.0e-05`: rclpy's load_parameter_file writes each value with
            # str() (1e-05) and reads that back as YAML, a string without the point; the file had it right
            import yaml  # noqa: PLC0415

            dumped = yaml.safe_dump(number).split("\n", 1)[0]   # (as ros2 param dump writes it: 1.0e-05)
            return (f"{reason}: {how} {_written(name, values, 'set', node)} (from a file: `ros2 param load` writes "
                    f"each value as Python's text and reads that back as YAML, so a double that Python writes with an "
                    f"exponent, a dump's {dumped} as {value}, arrives as this string however the file writes it: set "
                    f"it after the load with that command)")
    elif want == ParameterType.PARAMETER_STRING_ARRAY and type_ == ParameterType.PARAMETER_STRING:
        how, values = "write a list,", [yaml_value([value])]
    elif want == ParameterType.PARAMETER_STRING_ARRAY and type_ in _ARRAYS and len(value) == 0:
        # `ros2 param set ... cameras "[]"`: an empty list has no element type, and ros2cli sends a bool array
        reason = f"{name} is {_TYPE_WORDS[want]}; got an empty list (sent as {got}: [] has no element type)"
        why = _check_value(spec, [])
        if why is None:
            return reason
        how, values = f"{why}; e.g. its default:", [yaml_value(spec.default)]
    elif want in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_INTEGER) and \
            type_ == ParameterType.PARAMETER_BOOL:
        # `ros2 param set /dpt_node max_rate off`: YAML (ros2 param set's reading) takes off, no, false as a bool
        number = "a number" if want == ParameterType.PARAMETER_DOUBLE else "a whole number"
        how, values = (f"{number}, unquoted (YAML reads on, off, yes, no, true, false as a bool), e.g.",
                       [yaml_value(spec.default)])
    elif want == ParameterType.PARAMETER_STRING and type_ == ParameterType.PARAMETER_STRING_ARRAY and \
            name in CLASS_LISTS and len(value) > 0:
        # `ros2 param set /dpt_node points.exclude_classes "[person, car]"`: the classes as a YAML list
        how, values = "one string of comma-separated class names, not a list,", [_yaml_string(", ".join(value))]
    elif want == ParameterType.PARAMETER_STRING and type_ in (ParameterType.PARAMETER_INTEGER,
                                                               ParameterType.PARAMETER_DOUBLE,
                                                               ParameterType.PARAMETER_BOOL):
        how, values = "quote it (YAML reads it as a number or bool),", [_yaml_string(yaml_value(value))]
    elif want == ParameterType.PARAMETER_BOOL:
        how, values = "write true or false, unquoted,", ["false" if value in (0, "0") else "true"]
    elif want == ParameterType.PARAMETER_INTEGER and type_ in (ParameterType.PARAMETER_DOUBLE,
                                                                ParameterType.PARAMETER_STRING):
        whole = value if isinstance(value, float) else _float_or_none(value)
        if whole is not None and whole.is_integer() and range_refusal(spec, int(whole)) is None:
            how, values = "a whole number, unquoted and without a decimal point,", [str(int(whole))]
        else:
            how, values = "a whole number, unquoted and without a decimal point, e.g.", [str(spec.default)]
    else:
        return reason
    return f"{reason}: {how} {_written(name, values, 'set', node)}"


def _float_or_none(text: Any) -> Optional[float]:
    """``text`` (a string) as the finite number Python reads in it, None where it reads none."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def camera_listed_twice(cameras: Iterable[str], resolve: Callable[[str], str]) -> Optional[str]:
    """Why ``cameras`` names one camera twice: in two spellings (a, /a; ~/x, /<node>/x: two publishers per topic), or
    as two namespaces whose images are remapped to one topic (-r a/image:=/cam/image -r b/image:=/cam/image: the model
    would run twice on each of its frames), or why two cameras cannot be served side by side: their inverse_depth
    outputs remapped onto one topic (-r b/inverse_depth:=/a/inverse_depth: both would publish there, one's depth
    mixed with the other's); or None. ``resolve``: a relative topic name -> the node's topic (the running node's
    resolution, or one that follows rcl's rules and remaps for a node not started yet)."""
    seen: dict[tuple[str, str], str] = {}
    images: dict[str, str] = {}
    for ns in cameras:
        ns = ns.rstrip("/")
        images[ns] = resolve(f"{ns}/image" if ns else "image")
        for name, verb in (("inverse_depth", "publish"), ("image", "subscribe")):
            topic = resolve(f"{ns}/{name}" if ns else name)
            other = seen.get((name, topic))
            if other is not None and name == "inverse_depth" and images[other] != images[ns]:
                return (f"cameras {other!r} and {ns!r} are two cameras (images {images[other]} and {images[ns]}) "
                        f"whose inverse_depth outputs are remapped onto one topic, {topic}: both would publish "
                        f"there, one's depth mixed with the other's; remap each camera's outputs to topics of its own"
                        f"{topics.DROP_REMAP}")
            if other is not None:
                return (f"cameras lists one camera twice: {other!r} and {ns!r} both {verb} {topic}; "
                        f"list it once" + ("" if name == "inverse_depth" else
                                           " (or remap their image topics to their own cameras' images)"))
            seen[name, topic] = ns
    return None


def declare_refusal(name: str, kind: type, error: str, given: Optional[str] = None,
                    spec: Optional[ParamSpec] = None) -> str:
    """rclpy's refusal (``error``) of a start-up value for parameter ``name`` of Python type ``kind``, without the
    parameter's name that rclpy repeats at its end, and with the remedy (``declare_hint``; ``given``, ``spec``: as
    there)."""
    suffix = f": {name}"
    text = error[:-len(suffix)] if error.endswith(suffix) else error
    return text + declare_hint(name, kind, error, given, spec)


def declare_hint(name: str, kind: type, error: str, given: Optional[str] = None,
                 spec: Optional[ParamSpec] = None) -> str:
    """The remedy to add to rclpy's refusal (``error``) of a start-up value (``-p``, a params file) for a parameter
    of Python type ``kind``: rclpy says what was wrong, not how to write it right. ``given``: where the value came
    from (:func:`value_source`), "param" (``-p``) or "file" (a parameters file), to say the remedy in that form
    (:func:`_written`); None where that is not known (both forms). ``spec``: the parameter's row (default, range)
    where it is no parameter of the node's (sample_camera's); by default the node's row of that name."""
    whole = re.search(r"to '(-?\d+)' of type 'INTEGER'", error)
    if kind is float and whole:
        return (" (a whole number is an integer to ROS: write it with a decimal point, "
                f"{_written(name, [whole.group(1) + '.0'], given)})")
    if kind is list and "of type 'STRING'," in error:
        return f" (a list: {_written(name, ['[a, b]'], given)})"
    if kind is bool and "expecting type 'BOOL'" in error:
        return f" (a bool: write true or false, unquoted: {_written(name, ['true'], given)})"
    spec = spec if spec is not None else SPECS.get(name)
    default = spec.default if spec is not None else None
    listed = re.search(r"to '(\[.*\])' of type 'STRING_ARRAY', expecting type 'STRING'", error)
    if kind is str and name in CLASS_LISTS and listed:   # (the classes as a YAML list: [person, car])
        try:
            names = [str(n) for n in ast.literal_eval(listed.group(1))]
        except (ValueError, SyntaxError):
            names = ["person", "car"]
        return (f" (one string of comma-separated class names, not a list: "
                f"{_written(name, [_yaml_string(', '.join(names or ['person', 'car']))], given)})")
    if kind is str and "expecting type 'STRING'" in error:
        example = f"e.g. {_written(name, [_yaml_string(default)], given)}; " if isinstance(default, str) and default \
            else ""
        # (the value given, quoted: -p source:=0 is told -p source:="'0'", not an example's '1'; a bool as written)
        was = re.search(r"to '(.*)' of type '(INTEGER|DOUBLE|BOOL)'", error)
        quoted = "1" if was is None else was.group(1).lower() if was.group(2) == "BOOL" else was.group(1)
        return (f" (a string: {example}one that YAML reads as a number or bool is quoted: "
                f"{_written(name, [_yaml_string(quoted)], given)})")
    if kind is int and "expecting type 'INTEGER'" in error:
        allowed = ""
        if spec is not None and spec.int_range is not None:
            lo, hi, step = spec.int_range
            allowed = f"; allowed: {lo}..{hi}" + (f" in steps of {step}" if step != 1 else "")
        example = f", e.g. {_written(name, [str(default)], given)}" if isinstance(default, int) else ""
        return f" (a whole number, unquoted and without a decimal point{example}{allowed})"
    if kind is float and ("of type 'STRING'," in error or "of type 'BOOL'," in error):
        example = f", e.g. {_written(name, [repr(default)], given)}" if isinstance(default, float) else ""
        words = " (YAML reads on, off, yes, no, true, false as a bool)" if "of type 'BOOL'," in error else ""
        return f" (a number, unquoted{words}{example})"
    if spec is not None and ("out of range" in error or "not a valid step" in error):
        if spec.int_range is not None:   # (rclpy names the step only when the value is within the range)
            lo, hi, step = spec.int_range
            value = re.search(r"value: (-?\d+)", error)   # the allowed values nearest to the one given
            if step == 1:
                return f" (allowed: {lo}..{hi}" + ("" if value is None else "; nearest: " + _written(
                    name, [str(min(max(int(value.group(1)), lo), hi))], given)) + ")"
            if value is None:
                return f" (allowed: {lo}..{hi} in steps of {step}, e.g. {_written(name, [str(lo + step)], given)})"
            nearest, zero = dpt_ros.nearest_allowed(int(value.group(1)), spec.int_range, spec.zero)
            return (f" (allowed: {lo}..{hi} in steps of {step}; nearest: "
                    + _written(name, [str(v) for v in nearest], given)
                    + (f", or 0 for {zero}" if zero else "") + ")")
        if spec.float_range is not None:
            lo, hi = spec.float_range
            value = re.search(r"value: ([^\s:,]+)", error)
            number = None if value is None else _float_or_none(value.group(1))
            return f" (allowed: {lo:g}..{hi:g}" + ("" if number is None else "; nearest: " + _written(
                name, [yaml_float(min(max(number, lo), hi))], given)) + ")"
    return ""


#: what rcl reads as a bool in a ``-p`` rule or a parameters file (any case: quoting one more is harmless)
_YAML_BOOLS = frozenset({"y", "yes", "true", "on", "n", "no", "false", "off"})


def _yaml_string(text: str) -> str:
    """``text`` as YAML that rcl and ``ros2 param set`` read as that string (a ``-p`` value is YAML too): bare where
    it is one (``dpt_hybrid``), else quoted (``'1'``, ``'yes'``, ``'1e3'``: rcl reads a number or bool, or a YAML sign;
    ``'2026-12-06'``: PyYAML reads a date)."""
    number = True
    try:
        float(text)
    except ValueError:
        try:
            int(text, 0)
        except ValueError:
            number = False
    date = re.match(r"\d{4}-\d\d?-\d\d?$", text)   # (a date to PyYAML: `ros2 param set` fails on it bare)
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", text) and not (number or date) and text.lower() not in _YAML_BOOLS:
        return text
    return "'" + text.replace("'", "''") + "'"


def _written(name: str, values: list[str], given: Optional[str], node: Optional[str] = None) -> str:
    """How to write parameter ``name`` as each of ``values`` (YAML: ``7.0``, ``'1'``, ``[a, b]``; several: one or
    another) in the form the refused value was given (:func:`value_source`): "param" a ``-p`` rule as a shell takes it
    (``-p depth.variant:="'1'"``), "file" a parameters file's line (``depth.variant: '1'``), None both, each said;
    "set" (a live change) the ``ros2 param set`` command for node ``node`` (fully qualified) as a shell takes it
    (``ros2 param set /dpt_node depth.variant "'1'"``: it reads its value as YAML too, yaml.safe_load in rclpy's
    get_parameter_value, and sets a string as YAML reads it: ``'1'`` is 1, a string); a value ``<file>`` there is a
    placeholder for one the user chooses (``ros2 param set /dpt_node depth.weights <file>``)."""
    if given == "set":
        return " or ".join(f"ros2 param set {node} {name} {v if re.fullmatch(r'<[a-z]+>', v) else _shell_word(v)}"
                           for v in values)
    rule = " or ".join(f"-p {name}:={_shell_word(v)}" for v in values)
    line = " or ".join(f"{name}: {v}" for v in values)
    return {"param": rule, "file": line}.get(given, f"{rule} on the command line, {line} in a parameters file")


def yaml_value(value: Any) -> str:
    """A parameter value (bool, int, float, str or a list of them) as YAML that ``ros2 param set`` (yaml.safe_load)
    reads back as that value and type: ``true``, ``2``, ``2.0`` (a double keeps its point: PyYAML reads ``1e-05`` as
    a string, ``1.0e-05`` as a number), ``.inf``, a string as :func:`_yaml_string`, ``[a, b]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return yaml_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return _yaml_string(str(value))


def yaml_float(value: float) -> str:
    """``value`` in full precision (the shortest digits that give it back) as YAML reads a float, in positional
    notation (``.inf``, ``-.inf``, ``.nan`` where not finite): ``ros2 param set`` takes ``1e-05`` for a string (YAML 1.1
    wants a dot in the mantissa), and its argument parser takes ``-3.2e-05`` for an option (before Python 3.13 only
    ``-1``, ``-1.5`` pass for negative numbers), ``-0.000032`` for a value. Relative models' scales and shifts are
    often that small."""
    if not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    return np.format_float_positional(float(value), unique=True, trim="0")


def _shell_word(text: str) -> str:
    """``text`` quoted for a POSIX shell where it would not reach the program as it is (``'1'``, ``[a, b]``)."""
    if re.fullmatch(r"[A-Za-z0-9_./+:=,@%-]+", text):
        return text
    if not re.search(r"[\"$`\\!]", text):
        return f'"{text}"'
    return "'" + text.replace("'", "'\"'\"'") + "'"


def shown(value: Any, limit: int = 120) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters with the length said: a refusal quotes
    what it refuses, and a 100 kB value must not make a 100 kB reason or log line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit]}... ({size})"


def clip(text: str, limit: int = 2000) -> str:
    """A refusal's reason or log line cut to ``limit`` characters, the length said (the values in it are
    :func:`shown` already; this bounds what rclpy or a library quoted)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def _check_device(value: str, option: Optional[str] = None, given: Optional[str] = None,
                  node: Optional[str] = None) -> Optional[str]:
    """Why ``value`` is no device parameter value, None when it is one. ``option``: the command-line option of a
    tool that passes the value on to the node (``--device``): the reason is then for argparse's "argument
    --device: ..." and names the values as that option takes them (``use --device cpu``), not as ``-p device:=``.
    Otherwise ``given`` and ``node`` as in :func:`_written`: the remedy as the value was given (a ``-p`` rule, a
    parameters file's line, both), or for a live change the ``ros2 param set`` command for node ``node``."""
    said = "device " if option is None else ""
    if not _DEVICE_RE.fullmatch(value):
        return f"{said}{shown(value)} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"
    if value.startswith("cuda"):
        import torch  # lazily: only needed to answer this question

        if not dpt_ros.cuda_available():
            use = _written("device", ["cpu", "auto"], "set" if node is not None else given, node) \
                if option is None else f"{option} cpu (or {option} auto, the GPU where there is one)"
            return (f"{said}{value!r} requested but CUDA is not available on this machine ({cuda_missing()}); "
                    f"use {use}")
        index = int(value.split(":")[1]) if ":" in value else 0
        n = torch.cuda.device_count()
        if index >= n:
            use = "" if option is None else \
                f"; use {option} cuda" + (f" or {option} cuda:0..cuda:{n - 1}" if n > 1 else "")
            return f"{said}{value!r}: only {n} CUDA device(s) present{use}"
    return None


def device_option(value: str) -> str:
    """``value`` of a tool's ``--device`` that the tool gives the node's ``device`` parameter (argparse's ``type``):
    one the node would refuse, at its start and in its words (``-p device:=...``), is the tool's usage error instead,
    before anything starts, in the option's words.

    :raises argparse.ArgumentTypeError: the reason
    """
    import argparse  # noqa: PLC0415

    why = _check_device(value, "--device")
    if why:
        raise argparse.ArgumentTypeError(why)
    return value


def relative_path_text(value: str) -> str:
    """' (relative to the node's working folder, X)' for a relative path, else '': ros2 launch and ros2 run start the
    node in the folder they were started in, where a path such as README's weights/dpt_hybrid-ade20k-53898607.pt
    may not be, and a ros2 param set cannot see which folder that is."""
    if os.path.isabs(os.path.expanduser(value)):
        return ""
    return f" (relative to the node's working folder, {os.getcwd()})"


def _check_weights(value: str, option: Optional[str] = None) -> Optional[str]:
    """Why ``value`` is no weights parameter value, None when it is one; ``option`` as in :func:`_check_device`."""
    said = "weights " if option is None else ""
    if value in ("", RANDOM_WEIGHTS):
        return None
    from dpt_ros.model.checkpoint import (  # noqa: PLC0415
        CheckpointError,
        check_format,
        dangling_link_text,
        resolve_weights_path,
    )

    try:
        path = resolve_weights_path(value)   # a Hugging Face snapshot folder -> its weights file
        if not path.is_file():   # missing, or a device, pipe or socket
            where = relative_path_text(value) if option is None else ""   # (a tool's option: the user's own folder)
            what = "is not a regular file" if path.exists() else f"does not exist{dangling_link_text(path)}{where}"
            return f"{said}file {shown(value)} {what} (give a checkpoint path, or 'random')"
        check_format(path)   # its first bytes: what is plainly no checkpoint is refused here, not after the load
    except FileNotFoundError as e:
        return f"weights {shown(value)}: {e}" if option is None else str(e)
    except CheckpointError as e:
        return f"{'weights: ' if option is None else ''}{e} (give a checkpoint file, or 'random')"
    except OSError as e:   # e.g. a name longer than the file system allows
        return f"{said}{shown(value)}: cannot be opened: {e.strerror or e} (give a checkpoint path, or 'random')"
    return None


def _check_cameras(value: list) -> Optional[str]:
    if not value:
        return "cameras must list at least one namespace ('' = the node's own namespace)"
    twice = next((ns for i, ns in enumerate(value) if ns in value[:i]), None)
    if twice is not None:
        return f"cameras lists {shown(twice)} twice: {shown(value)}; list each camera once"
    for ns in value:
        if ns and not re.match(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$", ns):
            return (f"camera namespace {shown(ns)} is not a valid ROS namespace: names of letters, digits and '_' "
                    f"(not starting with a digit) joined by '/', optionally after '/' (absolute) or '~/' "
                    f"(private), no trailing '/' (e.g. left, /stereo/left, ~/cam)")
    return None


@functools.lru_cache(maxsize=16)
def class_labels(text: str) -> tuple[int, ...]:
    """Label values of a comma-separated list of class names (``points.exclude_classes``), e.g.
    ``"person, car"`` -> (13, 21), in any case (``"Person"``); ValueError naming an unknown name and the closest
    real ones."""
    names = _class_names()
    labels = []
    for item in text.split(","):
        name = item.strip()
        key = name.lower()   # (the class names are lower case)
        if not name:
            continue
        if key == names[0]:
            raise ValueError(f"{shown(name)} (label 0) is no class a model predicts: every pixel gets one of the "
                             f"classes 1..{len(names) - 1} (class_names[1:])")
        if key.isdigit():
            what = repr(names[int(key)]) if 0 < int(key) < len(names) else "no class"
            raise ValueError(f"{shown(name)} is a label id: give class names ({int(key)} is {what}; the class_names "
                             f"parameter lists them)")
        if key not in names[1:]:
            close = difflib.get_close_matches(key, names[1:], n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"{shown(name)} is not a segmentation class (the class_names parameter lists them){hint}")
        labels.append(names.index(key))
    return tuple(labels)


#: the parameters that take segmentation class names, one comma-separated string ('person, car')
CLASS_LISTS = ("depth.exclude_classes", "points.exclude_classes")


def _check_classes(value: str, name: str) -> Optional[str]:
    try:
        class_labels(value)
    except ValueError as e:
        return f"{name}: {e}"
    return None


def _class_names() -> list[str]:
    from dpt_ros.pipeline import ADE20K_CLASSES

    return ["unlabeled", *ADE20K_CLASSES]


PARAMETERS: tuple[ParamSpec, ...] = (
    # --- models -------------------------------------------------------------------------------
    ParamSpec("depth.variant", "dpt_hybrid",
              "Depth model variant (a name from the variant table, e.g. dpt_large, dpt_hybrid, "
              "dpt_hybrid_kitti, dpt_hybrid_nyu, dpt_tiny); empty disables depth.", "model"),
    ParamSpec("depth.weights", "",
              "Checkpoint of the depth model (official DPT .pt file, or a Hugging Face model.safetensors / "
              "pytorch_model.bin or its snapshot folder), or 'random' for random initialisation (outputs not "
              "meaningful).", "model", check=_check_weights),
    ParamSpec("segmentation.variant", "",
              "Segmentation model variant (dpt_large_ade20k, dpt_hybrid_ade20k); empty disables "
              "segmentation.", "model"),
    ParamSpec("segmentation.weights", "",
              "Checkpoint of the segmentation model (file or Hugging Face snapshot folder, as depth.weights), "
              "or 'random'.", "model", check=_check_weights),
    ParamSpec("input_size", 0,
              "Network input size in pixels (multiple of 32); 0 = the variant's own size "
              "(384 dpt_large/dpt_hybrid/dpt_base, 480 ADE20K, 352x1216 kitti, 480x640 nyu, 128 dpt_tiny).",
              "model", int_range=dpt_ros.INPUT_SIZE_RANGE, zero="the variant's own size"),
    ParamSpec("resize_method", "minimal",
              "How the image is scaled to the network size (DPT's keep-aspect rules). A frame whose network input "
              "would exceed 16x the network size's pixels is refused, counted error.encoding: with lower_bound one "
              "of an extreme aspect ratio, with minimal (the default) too one beyond 16:1 (at a square network "
              "size) whose shorter side is at least about half the network size, which minimal then scales to it "
              "(480x9000 at 384: 384x7200); never with upper_bound or fixed.", "model",
              choices=RESIZE_METHODS),
    ParamSpec("device", "auto", "Inference device: auto (cuda if available), cpu, cuda, cuda:N.",
              "model", check=_check_device),
    ParamSpec("precision", "fp32", "Inference precision.", "model", choices=PRECISIONS),
    ParamSpec("cuda_graphs", False, "Replay CUDA graphs per input shape (CUDA devices only): one per network shape "
              "and batch size, as many kept as there are cameras (at least 4).", "model"),
    ParamSpec("cpu_threads", 0,
              "CPU threads for PyTorch and OpenCV in this process (inference on the CPU, pre/post-processing on "
              "the host), so that the node leaves cores to the rest of the robot; 0 = their defaults (one per "
              "core). Given at start-up, it applies before the model's load and warm-up; /diagnostics' cpu_threads "
              "shows the threads in use.", int_range=(0, 256, 1)),
    # --- depth post-processing ----------------------------------------------------------------
    ParamSpec("depth.scale", 0.0,
              "Relative -> metric calibration: depth_m = 1 / (scale * inverse_depth + shift). "
              "0 = the variant's own metric constants (metric variants), else no metric depth. Set while a new model "
              "loads (e.g. with depth.variant), it applies with that model.",
              float_range=(0.0, 1.0e6)),
    ParamSpec("depth.shift", 0.0, "Shift of the metric calibration (see depth.scale).",
              float_range=(-1.0e6, 1.0e6)),
    ParamSpec("depth.align", False,
              "Fit depth.scale / depth.shift anew for every frame to a metric reference depth of the same view on "
              "the depth_reference topic (sensor_msgs/Image 32FC1 metres or 16UC1 millimetres, or its compressedDepth with "
              "depth.align_transport, e.g. a depth camera "
              "registered to this one, any size of the same aspect ratio), matched by stamp within "
              "depth.align_tolerance; the fit replaces depth.scale / depth.shift and a metric variant's metres. A "
              "frame without a usable reference falls back to those, else publishes no depth. The fit waits up to 50 ms "
              "(with use_sim_time stretched at a slow play, as camera_info.policy says) for a frame's reference while "
              "none as new has come (as camera_info.policy exact/nearest do) and none "
              "is held within the tolerance, or only one older by more than 5/8 of the references' period; after a "
              "wait in vain, not again for that camera until a reference arrives that a waiting frame would have got "
              "(as new as its last image, up to 1 s newer, or within the tolerance of one of its images that arrived "
              "no longer ago than the frames' wait reaches after their arrival, and older than it by no more than 5/8 "
              "of the references' period)."),
    ParamSpec("depth.align_transport", "raw",
              "Transport of the depth_reference topic, as image_transport names them: raw subscribes depth_reference "
              "(sensor_msgs/Image); compressedDepth subscribes depth_reference/compressedDepth (CompressedImage of "
              "image_transport's compressedDepth plugin, PNG: a depth camera over Wi-Fi, a bag with only its "
              "compressedDepth; RVL is not read); a remap of depth_reference moves it too. Set live, the node "
              "subscribes the other topic from the next message on, before it unsubscribes the one it had.",
              choices=("raw", "compressedDepth")),
    ParamSpec("depth.align_tolerance", 0.05, "Largest stamp difference (seconds) between a frame and its reference "
              "depth (depth.align).", float_range=(0.0, 10.0)),
    ParamSpec("depth.min", 0.0, "Depths below this (metres) are published as -Inf (REP 117).",
              float_range=(0.0, 1.0e6)),
    ParamSpec("depth.max", 1000.0, "Depths above this (metres) are published as +Inf (REP 117).",
              float_range=(0.0, 1.0e6)),
    ParamSpec("depth.exclude_classes", "",
              "Segmentation classes left out of depth (NaN: no measurement, 0 in 16UC1) and so out of points, "
              "comma-separated names from class_names (e.g. 'person, car': moving objects before depth-based "
              "mapping). Needs segmentation (segmentation.variant): without labels for a frame no depth or points "
              "are published (counted incomplete.exclude_classes). inverse_depth is unchanged. '' = none.",
              check=lambda v: _check_classes(v, "depth.exclude_classes")),
    ParamSpec("depth.encoding", "32FC1",
              "Encoding of depth (REP 118): 32FC1 metres (NaN / -Inf / +Inf as REP 117), or 16UC1 millimetres as "
              "raw depth drivers publish them (half the bytes; 0 = no measurement, which includes depths below "
              "depth.min, above depth.max or beyond 65.535 m; points are made from those millimetres, as "
              "depth_image_proc would).", choices=DEPTH_ENCODINGS),
    # --- outputs ------------------------------------------------------------------------------
    ParamSpec("publish.inverse_depth", True, "Publish inverse_depth (32FC1, model units)."),
    ParamSpec("publish.inverse_depth_colored", True, "Publish inverse_depth/colored (rgb8)."),
    ParamSpec("publish.depth", True,
              "Publish depth (metric, encoded as depth.encoding says) and depth/camera_info (needs a metric variant or "
              "depth.scale)."),
    ParamSpec("publish.segmentation", True, "Publish segmentation (mono8 labels 1..150, 0 unlabeled)."),
    ParamSpec("publish.segmentation_colored", True, "Publish segmentation/colored (rgb8 overlay)."),
    ParamSpec("publish.compressed", True,
              "Also offer the image outputs compressed, as image_transport's plugins do for C++ nodes: "
              "inverse_depth/colored/compressed and segmentation/colored/compressed (JPEG), segmentation/compressed "
              "(PNG, lossless labels), depth/compressedDepth (16-bit PNG; 32FC1 quantised in inverse depth up to "
              "compressed.depth_max). Each is encoded only while it has subscribers (also with lazy:=false) and "
              "only where its image output is enabled.", "configure"),
    ParamSpec("compressed.jpeg_quality", 95, "JPEG quality of the */compressed colour outputs (image_transport's "
              "jpeg_quality).", int_range=(1, 100, 1)),
    ParamSpec("compressed.depth_max", 10.0, "Farthest depth (metres) in depth/compressedDepth; farther ones "
              "read back as no data (image_transport's depth_max).", float_range=(0.01, 1.0e6)),
    ParamSpec("compressed.depth_quantization", 100.0, "Quantization of 32FC1 depth/compressedDepth "
              "(image_transport's depth_quantization): a code step at depth d is about d^2 / (q (q + 1)) metres, "
              "0.1 mm at 1 m and 1 cm at 10 m with 100; a depth has a code only beyond "
              "q (q + 1) / (65534.5 + q (q + 1) / depth_max) m (0.15 m with the defaults), nearer ones read back as "
              "no data.",
              float_range=(1.0, 10000.0)),
    ParamSpec("lazy", True, "Compute an output only while it has subscribers."),
    ParamSpec("max_rate", 0.0,
              "Most frames per second processed per camera (0 = no limit: as many as the model keeps up with), "
              "seconds of the node's clock: with use_sim_time /clock's, a bag's at any play rate, as finely as "
              "/clock comes (ros2 bag play --clock: 40 a second, 25 ms times --rate of the bag's time apart; frames "
              "between two share one time, so at --rate 10 max_rate 5 gives 4 frames a second of the bag, one per "
              "/clock; --clock 200 makes it finer). "
              "Frames in between are skipped on arrival, before any work, and counted as throttled; one may "
              "come up to half a period early (camera jitter), the long-run rate stays at or below this. Set (also "
              "to the value it had, after 0), it starts afresh: the next frame is processed and the period counts "
              "from it.",
              float_range=(0.0, 1000.0)),
    ParamSpec("points.enabled", True,
              "Publish points (PointCloud2, camera optical frame); needs metric depth and camera_info."),
    ParamSpec("points.max_rate", 0.0,
              "Most clouds per second per camera (0 = one for every processed frame), for mapping stacks that "
              "cannot take the camera rate: the cloud of a frame in between is not built (counted "
              "throttled.points); the other outputs keep the frame rate. As max_rate, up to half a period early, and "
              "afresh when set. A "
              "frame that could build none (no camera_info, no alignment, ...) leaves its turn to the next.",
              float_range=(0.0, 1000.0)),
    ParamSpec("points.stride", 2, "Keep every n-th pixel in both directions.", int_range=(1, 64, 1)),
    ParamSpec("points.color", True, "Add a packed rgb field from the input image."),
    ParamSpec("points.color_source", "image",
              "What the rgb field of the cloud (points.color) shows: the input image's colour (image) or the ADE20K "
              "palette colour of the point's class (segmentation: a semantic cloud in RViz; needs segmentation.variant, "
              "else the image's, counted incomplete.color_source).", choices=COLOR_SOURCES),
    ParamSpec("points.label", False, "Add a uint32 label field from segmentation (needs segmentation.variant; "
              "without labels for a frame the cloud comes without it, counted incomplete.label)."),
    ParamSpec("points.edge_filter", 0.0,
              "Drop the points of depth edges: a pixel whose depth differs from one of its 4 neighbours by more "
              "than this fraction of the nearer one (e.g. 0.05) is left out of the cloud (NaN when organised). "
              "Removes the 'flying pixels' a network's smooth depth puts between foreground and background; "
              "depth itself is unchanged. 0 = off.", float_range=(0.0, 10.0)),
    ParamSpec("points.exclude_classes", "",
              "Segmentation classes left out of the cloud, comma-separated names from class_names (e.g. 'person, car': "
              "moving objects before mapping; 'sky'); NaN when organised. Needs segmentation (segmentation.variant): "
              "without labels for a frame no cloud is published (counted incomplete.exclude_classes). Depth itself is "
              "unchanged. '' = none.", check=lambda v: _check_classes(v, "points.exclude_classes")),
    ParamSpec("points.organized", True,
              "Organised (H x W, NaN for invalid) cloud; false = only valid points (height 1)."),
    ParamSpec("colormap", "inferno", "Colour map of inverse_depth/colored."),
    ParamSpec("colormap_range", "running",
              "Colour range: running percentiles over recent frames (no per-frame flicker) or "
              "fixed colormap_min..colormap_max.", choices=COLORMAP_RANGES),
    ParamSpec("colormap_min", 0.0, "Lower end of the fixed colour range (inverse-depth units).",
              float_range=(-1.0e9, 1.0e9)),
    ParamSpec("colormap_max", 1.0, "Upper end of the fixed colour range (inverse-depth units).",
              float_range=(-1.0e9, 1.0e9)),
    ParamSpec("segmentation.overlay_alpha", 0.5,
              "Weight of the palette colour in segmentation/colored (0 = image only, 1 = palette only).",
              float_range=(0.0, 1.0)),
    # --- inputs -------------------------------------------------------------------------------
    ParamSpec("camera_info.policy", "nearest",
              "Which camera_info goes with an image: same stamp (exact), nearest stamp within "
              "camera_info.tolerance (nearest), or the latest received (latest). exact/nearest wait up to "
              "50 ms (with use_sim_time, /clock's pace: 1 / the play rate, up to 200 ms at ros2 bag play --rate 0.25 or "
              "slower) for the image's own while none as new has come (one more than 1 s newer does not count: it is "
              "of before the stamps went back, as at each ros2 bag play --loop); after a wait in vain, not again for "
              "that camera until a camera_info arrives that a waiting frame would have got (as new as its last "
              "image, up to 1 s newer, or matching one of its images that arrived no longer ago than the frames' "
              "wait reaches after their arrival): "
              "one stamped by another clock, or consistently further behind the images, matches no frame in time "
              "(the log and /diagnostics say so).",
              choices=CAMERA_INFO_POLICIES),
    ParamSpec("camera_info.rectified", True,
              "The image is rectified: back-project with P (fx=P[0], fy=P[5], cx=P[2], cy=P[6]); "
              "false (a raw image): with K and the lens distortion D as image_geometry reads it (plumb_bob or "
              "rational_polynomial: OpenCV's model of 4, 5, 8, 12 or 14 coefficients under either name; "
              "equidistant: 4); depth then stays as distorted as the image: rectify it before depth_image_proc, or "
              "use points."),
    ParamSpec("camera_info.url", "",
              "A camera calibration file to use instead of the camera_info topic (not subscribed then), for drivers "
              "that publish none: the YAML or INI (ost.txt) of ROS's camera_calibration, as file:///abs/path.yaml, "
              "package://<package>/<path> or a plain path; {camera} in it is replaced by each camera's name "
              "(cameras:=[left, right] -> left, right), ${ROS_HOME} by $ROS_HOME (~/.ros without it). Such a file "
              "describes the raw image: set camera_info.rectified:=false unless the images are rectified. '' = the "
              "topic. Set live (also again to the path it holds: a file replaced since, e.g. after a recalibration, is "
              "taken up), the file is read at once: one that cannot be used is refused with the reason."),
    ParamSpec("camera_info.tolerance", 0.05, "Stamp tolerance of the nearest policy (seconds).",
              float_range=(0.0, 10.0)),
    ParamSpec("cameras", [""],
              "Camera namespaces served by this node (one model, batched); each subscribes "
              "<ns>/image and publishes <ns>/inverse_depth etc. '' = the node's own namespace.",
              "configure", check=_check_cameras),
    ParamSpec("image_transport", "raw",
              "Subscribe image (sensor_msgs/Image) or image/compressed (CompressedImage); set live, the node "
              "subscribes the other topic from the next message on, before it unsubscribes the one it had (the "
              "images that one still held are received: processed or counted dropped).",
              choices=IMAGE_TRANSPORTS),
    ParamSpec("qos.input_reliability", "best_effort",
              "Reliability of the image, camera_info and (with depth.align) depth_reference subscriptions.",
              "configure", choices=RELIABILITIES),
    ParamSpec("qos.input_depth", 5, "History depth of the input subscriptions.", "configure",
              int_range=(1, 100, 1)),
    ParamSpec("qos.camera_info_durability", "volatile",
              "Durability of the camera_info subscription: transient_local for a driver that publishes its "
              "calibration once, latched (transient local, reliable; the subscription is then reliable too), with "
              "camera_info.policy:=latest (exact / nearest give that one camera_info to no frame of a later stamp), "
              "volatile for one that publishes it with every image (most drivers; a volatile publisher cannot feed a "
              "transient_local subscription).", "configure", choices=DURABILITIES),
    ParamSpec("qos.output_reliability", "reliable", "Reliability of the output publishers.", "configure",
              choices=RELIABILITIES),
    ParamSpec("qos.output_depth", 1, "History depth of the output publishers.", "configure",
              int_range=(1, 100, 1)),
    ParamSpec("diagnostics.period", 1.0, "Seconds between /diagnostics messages, on the node's clock: with "
              "use_sim_time /clock's time, so none while a bag is paused or after it ends (they go on when /clock "
              "does, also after a --loop jumps it back), nor before /clock's first message (5 s after start-up, "
              "or after use_sim_time is set true, without one, a warning says so). Set false and then true again "
              "after /clock had come, the node's clock resumes from the last /clock time received (rclpy keeps it) "
              "and stands there until /clock comes again: a warning says so at the switch, another 5 s later if no "
              "/clock came, with one report whose `clock` key says so.",
              float_range=(0.1, 60.0)),
    ParamSpec("class_names", ["(filled at start-up)"],
              "Segmentation class names, indexed by label value (0 = unlabeled, 1..150 ADE20K).",
              "static"),
)

SPECS: Mapping[str, ParamSpec] = MappingProxyType({p.name: p for p in PARAMETERS})
#: names given up, and the ones that replaced them. The colour range's were under ``colormap.``, beside the
#: ``colormap`` parameter itself; a name that is both a parameter and a prefix of others breaks ``ros2 param dump``
#: (it nests names at the dots) and cannot be written as nested YAML
RENAMED: Mapping[str, str] = MappingProxyType({"colormap.range": "colormap_range", "colormap.min": "colormap_min",
                                               "colormap.max": "colormap_max"})
MODEL_PARAMETERS = tuple(p.name for p in PARAMETERS if p.apply == "model")
CONFIGURE_PARAMETERS = tuple(p.name for p in PARAMETERS if p.apply == "configure")
#: a relative model's calibration to metres: it belongs to the model, so set while another model loads, it applies
#: with that model (the running one keeps its own); every other next-frame parameter applies from the next frame
MODEL_CALIBRATION = ("depth.scale", "depth.shift")


@dataclass(frozen=True)
class Settings:
    """An immutable snapshot of every parameter value; ``settings["depth.min"]``."""

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def replace(self, changes: Mapping[str, Any]) -> "Settings":
        merged = dict(self.values)
        merged.update(changes)
        return Settings(MappingProxyType(merged))

    def model_key(self) -> tuple:
        """The values that define the loaded models; engines are rebuilt when it changes. The weights
        of a disabled task (empty variant) are None: setting them loads nothing until it is enabled."""
        disabled = {f"{t}.weights" for t in ("depth", "segmentation") if not self.values[f"{t}.variant"]}
        return tuple(None if n in disabled else self.values[n] for n in MODEL_PARAMETERS)


def defaults() -> Settings:
    values = {p.name: (list(p.default) if isinstance(p.default, list) else p.default) for p in PARAMETERS}
    values["class_names"] = _class_names()
    return Settings(MappingProxyType(values))


def _variant_names(task: str) -> list[str]:
    from dpt_ros.model import VARIANTS

    return [name for name, v in VARIANTS.items() if v.task == task]


def _colormap_names() -> tuple[str, ...]:
    from dpt_ros import pipeline

    return tuple(pipeline.COLORMAPS)


def _check_value(spec: ParamSpec, value: Any, option: Optional[str] = None, given: Optional[str] = None,
                 node: Optional[str] = None) -> Optional[str]:
    """Why ``value`` is no value of ``spec``; ``option``: the command-line option of a tool that gives the value to the
    node (the reason is then for argparse's "argument --input-size: ..." and does not name the parameter). ``given``,
    ``node``: for the device's remedy, as in :func:`_check_device`."""
    if spec.type is list and value is None:   # `-p name:=[]` reaches rclpy as an unset (None) value
        value = []
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        return f"{spec.name} must be of type {spec.type.__name__}, got {type(value).__name__}"
    if spec.type is list and not all(isinstance(v, str) for v in value):
        return f"{spec.name} must be a list of strings"
    choices = spec.listed_choices()   # (the colour maps too: the pipeline's, read only when asked for)
    if choices is not None and value not in choices:
        return f"{'' if option else spec.name + '='}{shown(value)} is not one of {', '.join(choices)}"
    reason = range_refusal(spec, value, option)
    if reason is None and spec.check is not None:
        if option is not None:
            return spec.check(value, option)
        return _check_device(value, given=given, node=node) if spec.check is _check_device else spec.check(value)
    return reason


def parameter_option(name: str, option: str) -> Callable[[str], Any]:
    """argparse's ``type`` for a tool's ``option`` (``--input-size``) whose value the tool gives the node's parameter
    ``name`` (``input_size``): a value the node would refuse, at its start and in its words (``-p input_size:=``),
    is the tool's usage error instead, before anything starts, in the option's words ("argument --input-size: 100 is
    not a multiple of 32: use 96 or 128 ..."). The parameter's own checks (type, range, check function) decide.

    The parameter's check function, if any, must take ``option`` (as :func:`_check_weights`)."""
    import argparse  # noqa: PLC0415

    spec = SPECS[name]

    def convert(text: str) -> Any:
        try:
            value = spec.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown(text)} is not {_OPTION_TYPE_WORDS[spec.type]}") from None
        why = _check_value(spec, value, option)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    return convert


_OPTION_TYPE_WORDS = {int: "a whole number", float: "a number", str: "a string"}


def target_refusals(device: str, precision: str, cuda_graphs: bool, options: bool = False,
                    node: Optional[str] = None, changed: Iterable[str] = ()) -> list[str]:
    """Why the node would refuse ``precision`` / ``cuda_graphs`` with ``device`` (fp16 or CUDA graphs where the model
    runs on the CPU: ``cpu``, or ``auto`` without CUDA, :func:`dpt_ros.resolved_device`); ``options``: in the words of a
    tool's ``--device``, ``--precision`` and ``--cuda-graphs`` (for its ``ap.error``) instead of the parameters'.
    ``node`` (a live change of node ``node``, fully qualified; ``changed``: the names it sets): the remedy as the
    ``ros2 param set`` commands that do it, to set first where the change was the device."""
    on_cpu = dpt_ros.resolved_device(device) == "cpu"
    where = f"--device {device}" + (" finds no CUDA on this machine" if device == "auto" else "")
    reasons = []
    if cuda_graphs and on_cpu:
        reason = f"cuda_graphs needs a CUDA device (device {device!r} runs on the CPU)"
        if node is not None and "cuda_graphs" not in changed:   # (the device moved to the CPU: graphs off first)
            reason += f": {_written('cuda_graphs', ['false'], 'set', node)} first"
        reasons.append(reason if not options else
                       f"--cuda-graphs needs a CUDA device ({where}); leave --cuda-graphs out")
    if precision == "fp16" and on_cpu:
        use = "fp32 or bf16" if node is None else \
            _written("precision", ["fp32", "bf16"], "set", node) + ("" if "precision" in changed else " first")
        reasons.append(f"precision fp16 is not supported on the CPU (device {device!r}); use {use}"
                       if not options else
                       f"--precision fp16 is not supported on the CPU ({where}); use --precision fp32 or bf16")
    return reasons


def range_refusal(spec: ParamSpec, value: Any, option: Optional[str] = None,
                  node: Optional[str] = None) -> Optional[str]:
    """Why ``value`` (of the parameter's type) is outside ``spec``'s range, with the allowed values nearest to it
    where the range has steps; None when it is inside (or there is no range). The node refuses a live change with
    this before rclpy's descriptor check, whose words ("not a valid step. Min: 0, max: 2048, value: 100, step: 32")
    say what is wrong but not what would do; ``node`` (its fully qualified name) says those values as the ``ros2
    param set`` commands that set them (:func:`_written`). ``option``: as in :func:`_check_value` (the reason names
    no parameter)."""
    head = f"{value}" if option else f"{spec.name}={value}"
    if spec.int_range is not None:
        why = dpt_ros.int_range_refusal(value, spec.int_range, spec.zero, None if node is None else
                                        lambda values: _written(spec.name, values, "set", node))
        return None if why is None else f"{head} {why}"
    if spec.float_range is not None:
        lo, hi = spec.float_range
        if not (math.isfinite(value) and lo <= value <= hi):
            return f"{head} out of range {lo:g}..{hi:g}"
    return None


def check_value(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is no value of parameter ``name`` (its type, range or choices; the node refuses it at start-up
    and in a change), None when it is one. Without the checks across parameters of :func:`validate`."""
    return _check_value(SPECS[name], value)


def start_values(sources: Iterable[tuple[str, str]], node: str) -> dict[str, Any]:
    """The start-up values node ``node`` (fully qualified: ``/dpt_node``, ``/robot/dpt_node``) takes from ``sources``
    in command-line order, ``("file", path)`` for ``--params-file path`` and ``("param", "name:=value")`` for
    ``-p name:=value``, as rcl parses them and rclpy picks the node's: a file's sections by node name (``/**``,
    ``/robot/dpt_node``, nested ``robot: {dpt_node: ...}``, wildcards ``/*`` for one name and ``/**`` for any number:
    ``/**/dpt_node``), each with its ``ros__parameters`` (nested names joined with dots: ``publish: {compressed:
    false}`` is publish.compressed); ``-p`` a section ``/**``. A section named again (in a later file too) takes the
    later values in its first place; the sections that match the node apply in that order, a later one over an
    earlier (rclpy's rule: not the most specific). Values are YAML (``-p cameras:=[left, right]``). Names are not
    checked: rclpy keeps any, the node ignores those it does not have.

    :raises ValueError: a file that cannot be read or is no ROS 2 parameters file (also one with a section that is
        no valid node name, which rcl refuses), a rule that is not name:=value
    """
    values: dict[str, Any] = {}
    for name, given in _sections(sources).items():
        if _section_applies(name, node):
            values.update(given)
    return values


def _section_applies(section: str, node: str) -> bool:
    """Whether the parameters file section ``section`` (as rcl names it: ``/dpt_node``, ``/**``) is node ``node``'s
    (fully qualified), by rclpy's match: ``/*`` stands for one ``/name``, ``/**`` for any number."""
    try:
        return re.fullmatch(section.replace("/*", r"(/\w+)"), node, re.ASCII) is not None
    except re.error:   # (no valid node name: no node has it)
        return False


def ros_sources(command_line: Iterable[str]) -> list[tuple[str, str]]:
    """The parameter sources of a command line's ROS arguments (after ``--ros-args``, up to a ``--``), in order, as
    :func:`start_values` takes them: ``("file", path)`` per ``--params-file path``, ``("param", "name:=value")`` per
    ``-p`` / ``--param name:=value``."""
    sources, ros, args = [], False, list(command_line)
    for i, arg in enumerate(args):
        if arg == "--ros-args":
            ros = True
        elif arg == "--":
            ros = False
        elif ros and arg in ("--params-file", "-p", "--param") and i + 1 < len(args):
            sources.append(("file" if arg == "--params-file" else "param", args[i + 1]))
    return sources


def params_files(command_line: Iterable[str]) -> list[str]:
    """The files of the ``--params-file FILE`` arguments of a command line's ROS arguments (after ``--ros-args``,
    up to a ``--``), in order."""
    return [source for kind, source in ros_sources(command_line) if kind == "file"]


def value_source(command_line: Iterable[str], node: str, name: str) -> Optional[str]:
    """Where the start-up value of parameter ``name`` that node ``node`` (fully qualified) takes from
    ``command_line`` came from, by :func:`start_values`' rules: "param" (a ``-p`` rule), "file" (a parameters file),
    or None where the command line does not give it (launch_ros's or a test's parameter overrides) or cannot be read
    (rcl says why)."""
    kinds: dict[str, dict[str, str]] = {}   # section -> {name: the kind of source that gave it last}, in rcl's order
    for kind, source in ros_sources(command_line):
        try:
            sections = _sections([(kind, source)])
        except ValueError:
            return None
        for section, values in sections.items():
            into = kinds.setdefault(section, {})
            if name in values:
                into[name] = kind
    found = None
    for section, given in kinds.items():
        if name in given and _section_applies(section, node):
            found = given[name]
    return found


def params_file_unused(path: str, node: str) -> Optional[str]:
    """The warning for a parameters file none of whose sections is node ``node``'s (fully qualified), so that rclpy
    drops all its values without a word (a misspelt node name, or ``dpt_node:``, which is ``/dpt_node``, for a node
    in a namespace); None when one is, or when the file cannot be read as one (rcl has said so then)."""
    try:
        sections = list(_sections([("file", path)]))
    except ValueError:
        return None
    if not sections or any(_section_applies(s, node) for s in sections):
        return None
    name = node.rsplit("/", 1)[-1]
    if f"/{name}" in sections:
        hint = (f" (a node name in a parameters file is from the root namespace: {name}: means /{name}, not this "
                f"node in {node.rsplit('/', 1)[0] or '/'})")
    elif any("*" in s for s in sections):   # (e.g. /*/dpt_node for a node two namespaces down)
        hint = " (/* stands for exactly one name, /** for any number of them)"
    elif any(s.rsplit("/", 1)[-1] == name for s in sections):   # (the node's name in another namespace)
        hint = f" (this node is in the namespace {node.rsplit('/', 1)[0] or '/'})"
    else:
        close = difflib.get_close_matches(node, sections, n=1, cutoff=0.6)
        hint = " (misspelt?)" if close else ""
    named = f"its section {sections[0]} names another node" if len(sections) == 1 else \
        f"its sections {', '.join(sections)} name other nodes"
    return (f"parameters file {path} gives this node ({node}) nothing, all its values are ignored: {named}{hint}; "
            f"name the section {node}, or /** for every node")


def _sections(sources: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Node name (``/dpt_node``, ``/**``) -> the values ``sources`` give it, in the order rcl first met the name
    (see :func:`start_values`)."""
    import yaml  # noqa: PLC0415

    class Loader(yaml.SafeLoader):
        """PyYAML's safe loader reading a plain y, Y, n or N as rcl's parser does: a bool (as yes and no)."""
        bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}

    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^[yYnN]$"), list("yYnN"))
    sections: dict[str, dict[str, Any]] = {}   # node name -> values, in the order rcl first met the name

    def parameters(values: Any, prefix: str, where: str, into: dict) -> None:
        if not isinstance(values, dict):
            raise ValueError(f"{where}: ros__parameters{' ' + prefix if prefix else ''} must be a mapping of "
                             f"parameter names to values (e.g. publish: {{compressed: false}})")
        for key, value in values.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                parameters(value, name, where, into)
            else:
                into[name] = value

    def section(doc: Any, names: list, where: str) -> None:
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: not a ROS 2 parameters file: node names map to ros__parameters "
                             f"(/**: {{ros__parameters: {{camera_info.url: ...}}}})")
        for key, value in doc.items():
            if key != "ros__parameters":
                section(value, [*names, str(key)], where)
            elif not names:
                raise ValueError(f"{where}: ros__parameters without a node name above it; put it under /** "
                                 f"(every node) or the node's name (/dpt_node)")
            else:   # (rcl joins the names with '/', one ending in '/' without another; rclpy adds the leading one)
                name = names[0]
                for inner in names[1:]:
                    name += inner if name.endswith("/") else "/" + inner
                name = name if name.startswith("/") else "/" + name
                # (rcl refuses the whole file for one: '/dpt.node', '//dpt_node', '/rob*/x', '/1robot/x')
                if not re.fullmatch(r"(/(\*\*?|[A-Za-z_]\w*))+", name, re.ASCII):
                    raise ValueError(f"{where}: section {name} is no valid node name (rcl refuses the file): names "
                                     f"of letters, digits and _, not beginning with a digit, joined by single '/', "
                                     f"and the wildcards /* and /** (e.g. /robot/dpt_node, /**)")
                parameters(value, "", where, sections.setdefault(name, {}))

    for kind, source in sources:
        if kind == "file":
            try:
                with open(source) as f:
                    doc = yaml.load(f, Loader=Loader)   # noqa: S506 (a safe loader)
            except OSError as e:
                raise ValueError(f"parameters file {source}: {e.strerror or e}") from None
            except yaml.YAMLError as e:
                raise ValueError(f"parameters file {source}: no valid YAML ({str(e).splitlines()[0]})") from None
            except UnicodeDecodeError:   # (a binary file, e.g. weights given by mistake: its decoding error alone
                # named neither the file nor what was wrong)
                raise ValueError(f"parameters file {source}: not a text file (no UTF-8 YAML); give the parameters "
                                 f"YAML file (/**: {{ros__parameters: ...}})") from None
            section(doc, [], f"parameters file {source}")
        else:
            name, sep, text = source.partition(":=")
            if not sep or not name or not text:
                raise ValueError(f"parameter {source!r} is not NAME:=VALUE "
                                 f"(e.g. camera_info.url:=file:///abs/cam.yaml)")
            try:
                sections.setdefault("/**", {})[name] = yaml.load(text, Loader=Loader)   # noqa: S506
            except yaml.YAMLError as e:
                raise ValueError(f"parameter {source!r}: its value is no valid YAML ({str(e).splitlines()[0]})") \
                    from None
    return sections


def renamed(name: str) -> str:
    """What to say of a parameter name in :data:`RENAMED`."""
    return (f"parameter {name!r} is now {RENAMED[name]!r} (renamed so that `ros2 param dump` can write this node's "
            f"parameters: {name.split('.')[0]!r} is a parameter itself); use {RENAMED[name]!r}")


def unknown_parameter(name: str, live: bool = False) -> str:
    """What to say of a parameter the node does not have: at start-up (``-p``, ``--params-file``), where rclpy
    ignores such a value silently, the warning; ``live`` (``ros2 param set``), the refusal's reason, which from
    rclpy would be "Invalid access to undeclared parameter(s): []"."""
    if name in RENAMED:
        return renamed(name) + ("" if live else "; ignored")
    close = difflib.get_close_matches(name, [p.name for p in PARAMETERS], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown parameter {shown(name)} {'refused: this node does not have it' if live else 'ignored'}: {hint}"
            f"`ros2 param list` or the README's parameter table lists the ones this node has")


def validate(current: Settings, changes: Mapping[str, Any],
             node: Optional[str] = None) -> tuple[Optional[Settings], list[str]]:
    """Check ``changes`` against ``current``; return (new snapshot, []) or (None, reasons). ``node``: the fully
    qualified name of the node whose live change this is: the checks across parameters then say their remedies as
    the ``ros2 param set`` commands that take (:func:`_written`); without it (the tools) in words."""
    reasons: list[str] = []
    for name, value in changes.items():
        spec = SPECS.get(name)
        if spec is None:
            reasons.append(f"unknown parameter {shown(name)}")
            continue
        reason = _check_value(spec, value, node=node)
        if reason:
            reasons.append(reason)
    if reasons:
        return None, reasons
    fixed = {n: (float(v) if SPECS[n].type is float else v) for n, v in changes.items()}
    new = current.replace(fixed)
    reasons.extend(_cross_checks(new, changes.keys(), node))
    return (None, reasons) if reasons else (new, [])


def _cross_checks(s: Settings, changed: Iterable[str], node: Optional[str] = None) -> list[str]:
    """Why settings ``s`` do not go together (``changed``: the names a change sets, none for a whole snapshot);
    ``node``: as in :func:`validate`."""
    changed = set(changed)
    reasons = []
    for task in ("depth", "segmentation"):
        variant = s[f"{task}.variant"]
        other = "segmentation" if task == "depth" else "depth"
        if variant and (f"{task}.variant" in changed or not changed):
            names = _variant_names(task)
            if variant not in names:
                hint = ""
                if variant in _variant_names(other) and node is None:
                    hint = f"; it is a {other} variant: set {other}.variant"
                elif variant in _variant_names(other):   # (an empty weights parameter would refuse it: set first)
                    weights = "" if s[f"{other}.weights"] else \
                        f"{_written(f'{other}.weights', ['<file>'], 'set', node)} (or random), then "
                    hint = f"; it is a {other} variant: {weights}{_written(f'{other}.variant', [variant], 'set', node)}"
                reasons.append(f"{task}.variant={shown(variant)} is not a {task} variant; valid: "
                               + ", ".join(names) + f" (or '' to disable){hint}")
        # a running node (changed non-empty; start-up reports this itself, with download instructions); not for a
        # variant refused above (weights would not make it one)
        if variant and variant in _variant_names(task) and not s[f"{task}.weights"] \
                and changed & {f"{task}.variant", f"{task}.weights"}:
            reason = f"{task}.weights is empty but {task}.variant is {variant!r}: "
            if node is None:
                reason += (f"set {task}.weights to a checkpoint file or 'random' (or {task}.variant to '' to disable "
                           f"{task})")
            elif f"{task}.weights" not in changed:   # (the variant set: its weights go first)
                reason += (f"set its weights first, {_written(f'{task}.weights', ['<file>'], 'set', node)} (or random); "
                           f"from a file, `ros2 param load` sets {task}.variant before {task}.weights (one by one, in "
                           f"the file's order, as ros2 param dump sorts them): load the file again")
            else:   # (the weights cleared: a file or random, or the task off, where the other task runs)
                reason += f"{_written(f'{task}.weights', ['<file>'], 'set', node)} (or random)"
                if s[f"{other}.variant"]:
                    reason += f", or to disable {task}: {_written(f'{task}.variant', [_yaml_string('')], 'set', node)}"
            reasons.append(reason)
    if not s["depth.variant"] and not s["segmentation.variant"]:
        reasons.append("depth.variant and segmentation.variant are both empty: enable at least one task")
    for low, high in (("depth.min", "depth.max"), ("colormap_min", "colormap_max")):
        bottom, top = SPECS[low].float_range[0], SPECS[high].float_range[1]
        if s[low] >= s[high] and (s[high] <= bottom or s[low] >= top):
            # no value of the other end goes with it (depth.max 0, read as 'no limit' as max_rate 0 is): neither "set
            # the other first" nor moving the other end would do; a value of its own that does, its default
            name, end, other, word, side = (high, bottom, low, "lowest", "above") if s[high] <= bottom else \
                (low, top, high, "highest", "below")
            reason = (f"{name} ({s[name]:g}) must be {side} {end:g}, the {word} value of {other} (no {other} is "
                      f"{'below' if side == 'above' else 'above'} it): e.g. its default, ")
            default = SPECS[name].default
            reasons.append(reason + (_written(name, [yaml_value(default)], "set", node) if node is not None
                                     else f"{default:g}"))
        elif s[low] >= s[high]:
            reason = f"{low} ({s[low]:g}) must be below {high} ({s[high]:g})"
            if node is not None and high in changed and low not in changed:
                # (a file's new range below the running one: ros2 param load sets the names as a dump sorts them)
                reason += (f": set {low} first (from a file, `ros2 param load` sets {high} before {low}, one by one, "
                           f"in the file's order, as ros2 param dump sorts them: load the file again)")
            reasons.append(reason)
    reasons.extend(target_refusals(s["device"], s["precision"], s["cuda_graphs"], node=node, changed=changed))
    return reasons


def check_all(s: Settings, given: Callable[[str], Optional[str]] = lambda name: None) -> list[str]:
    """Every reason why a complete snapshot (e.g. the start-up values) is invalid; ``given``: where the start-up
    value of a parameter came from (:func:`value_source`), for a remedy in that form (asked only for the device's:
    it reads the command line's parameters files)."""
    reasons = [r for spec in PARAMETERS if (r := _check_value(
        spec, s[spec.name], given=given(spec.name) if spec.check is _check_device else None))]
    return reasons or _cross_checks(s, ())


def markdown_table() -> str:
    """The parameter reference as a Markdown table (README "Parameters" is generated from this)."""
    rows = ["| parameter | type | default | range / choices | applies | description |", "|---|---|---|---|---|---|"]
    for p in PARAMETERS:
        choices = p.listed_choices()
        if choices:
            constraint = ", ".join(f"`{c}`" for c in choices)
        elif p.int_range:
            lo, hi, step = p.int_range
            constraint = f"{lo}..{hi}" + (f" step {step}" if step > 1 else "")
        elif p.float_range:
            constraint = f"{p.float_range[0]:g}..{p.float_range[1]:g}"
        else:
            constraint = ""
        default = "ADE20K names" if p.name == "class_names" else json.dumps(p.default)
        applies = {"live": "next frame", "model": "model reload", "configure": "read-only; managed: configure",
                   "static": "read-only"}[p.apply]
        kind = {bool: "bool", int: "int", float: "double", str: "string", list: "string[]"}[p.type]
        rows.append(f"| `{p.name}` | {kind} | `{default}` | {constraint} | {applies} | {p.description} |")
    return "\n".join(rows)
