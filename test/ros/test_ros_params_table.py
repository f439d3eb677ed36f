"""The parameter table: descriptors, snapshots and validation (no ROS graph needed)."""
import dataclasses
import math
import os
import re
import shlex

import pytest
import torch
from rcl_interfaces.msg import ParameterType
from safetensors.torch import save_file

import dpt_ros
from dpt_ros.ros import params


def test_issue_parameter_names_are_all_declared():
    public = """depth.variant segmentation.variant depth.weights segmentation.weights input_size resize_method
    device precision cuda_graphs depth.scale depth.shift depth.min depth.max points.enabled points.stride
    points.color points.label points.organized colormap segmentation.overlay_alpha qos.input_reliability
    qos.input_depth qos.output_reliability camera_info.policy camera_info.tolerance lazy cameras class_names""".split()
    assert set(public) <= set(params.SPECS)


def test_descriptors_carry_type_description_ranges_read_only():
    for spec in params.PARAMETERS:
        d, managed = spec.descriptor(), spec.descriptor(managed=True)
        assert d.name == spec.name and len(d.description) > 20
        assert d.read_only == (spec.apply in ("static", "configure"))
        assert managed.read_only == (spec.apply == "static")   # the lifecycle node: configure ones while unconfigured
    assert set(params.CONFIGURE_PARAMETERS) == {"cameras", "publish.compressed", "qos.input_reliability",
                                                "qos.input_depth", "qos.camera_info_durability", "qos.output_reliability",
                                                "qos.output_depth"}
    assert "Read-only" in params.SPECS["cameras"].descriptor().description
    # what `ros2 param describe` says on the managed node is when a value can be set and when it applies there
    for name in ("cameras", "qos.output_depth", "qos.input_reliability", "publish.compressed"):
        assert params.SPECS[name].descriptor(managed=True).description.endswith(
            " Set it while the node is unconfigured (refused while inactive or active); the next configure transition "
            "applies it."), name
    assert params.SPECS["depth.variant"].descriptor().description.endswith(
        " Changing it loads the model again in the background.")
    assert params.SPECS["depth.variant"].descriptor(managed=True).description.endswith(
        " Changing it while the node is configured (inactive or active) loads the model again in the background; "
        "unconfigured, it is checked and the next configure transition loads it.")
    assert params.SPECS["class_names"].descriptor(managed=True).read_only
    d = params.SPECS["input_size"].descriptor()
    assert d.type == ParameterType.PARAMETER_INTEGER and (d.integer_range[0].from_value, d.integer_range[0].step) == (0, 32)
    d = params.SPECS["camera_info.policy"].descriptor()
    assert "'exact', 'nearest', 'latest'" in d.description and d.additional_constraints
    assert params.SPECS["cameras"].descriptor().type == ParameterType.PARAMETER_STRING_ARRAY


def test_defaults_are_valid_except_missing_weights():
    s = params.defaults()
    assert params.check_all(s) == []
    assert s["class_names"][0] == "unlabeled" and len(s["class_names"]) == 151
    assert s["depth.variant"] == "dpt_hybrid" and s["depth.weights"] == ""


def test_default_lists_are_copies():
    """A snapshot's list values are its own: changing one changes neither the table nor the next defaults."""
    d = params.defaults()
    d["cameras"].append("left")
    assert params.defaults()["cameras"] == [""] and params.SPECS["cameras"].default == [""]


def test_snapshots_are_immutable_and_replaced_whole():
    s = params.defaults()
    new, reasons = params.validate(s, {"depth.min": 1, "colormap": "gray"})
    assert reasons == [] and new["depth.min"] == 1.0 and isinstance(new["depth.min"], float)
    assert s["depth.min"] == 0.0 and s["colormap"] == "inferno"
    with pytest.raises(TypeError):
        new.values["depth.min"] = 3.0
    assert new.model_key() == s.model_key()
    swapped, _ = params.validate(s, {"input_size": 96})
    assert swapped.model_key() != s.model_key()


@pytest.mark.parametrize("changes,needle", [
    ({"depth.variant": "nope"}, "valid: dpt_large"),
    ({"segmentation.variant": "dpt_large"}, "is not a segmentation variant"),
    ({"depth.variant": "dpt_large_ade20k"}, "it is a segmentation variant: set segmentation.variant"),
    ({"segmentation.variant": "dpt_hybrid"}, "it is a depth variant: set depth.variant"),
    ({"depth.variant": ""}, "both empty"),
    ({"input_size": 100}, "input_size=100 is not a multiple of 32: use 96 or 128 (allowed: 0..2048 in steps of 32)"),
    ({"input_size": 2040}, "use 2016 or 2048"),
    ({"input_size": -32}, "input_size=-32 out of range 0..2048 in steps of 32: use 32, or 0 for the variant's own size"),
    ({"depth.max": -1.0}, "out of range"),
    ({"depth.scale": math.nan}, "out of range"),
    ({"colormap_min": 2.0}, "colormap_min (2) must be below colormap_max (1)"),
    ({"colormap_min": 1.0}, "colormap_min (1) must be below colormap_max (1)"),   # an empty range
    ({"depth.min": 5.0, "depth.max": 5.0}, "depth.min (5) must be below depth.max (5)"),
    ({"points.stride": 0}, "points.stride=0 out of range"),
    ({"segmentation.overlay_alpha": 1.5}, "segmentation.overlay_alpha=1.5 out of range"),
    ({"cameras": ["1cam"]}, "not a valid ROS namespace"),
    ({"cameras": ["left/"]}, "not a valid ROS namespace"),
    ({"resize_method": "stretch"}, "minimal, lower_bound, upper_bound"),
    ({"device": "cuda:x"}, "'cuda:N'"),
    ({"device": "cuda:"}, "device 'cuda:' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),   # N is not optional
    # names torch.device (the model's check_target) refuses: refused here, not at the model's load ("Invalid device
    # string"): the first two were taken here, the others said to need CUDA (and taken where there is a GPU)
    ({"device": "cpu\n"}, "device 'cpu\\n' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ({"device": "auto\n"}, "device 'auto\\n' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ({"device": "cuda\n"}, "device 'cuda\\n' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ({"device": "cuda:01"}, "device 'cuda:01' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ({"device": "cuda:\u0661"}, "device 'cuda:\u0661' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ({"cameras": ["a", "a"]}, "cameras lists 'a' twice: ['a', 'a']; list each camera once"),   # (what to do too)
    ({"cameras": ["", "b", ""]}, "cameras lists '' twice: ['', 'b', '']; list each camera once"),
    ({"cameras": ["bad name"]}, "not a valid ROS namespace"),
    ({"cameras": ["~left"]}, "not a valid ROS namespace"),   # rcl refuses '~' not followed by '/'
    ({"depth.weights": ""}, "depth.weights is empty but depth.variant is 'dpt_hybrid'"),
    ({"segmentation.variant": "dpt_hybrid_ade20k"}, "segmentation.weights is empty"),
    ({"lazy": 1}, "type bool"),
    ({"points.stride": True}, "type int"),
    ({"depth.scale": True}, "depth.scale must be of type float, got bool"),   # an int is taken as a float, a bool not
    ({"cuda_graphs": True, "device": "cpu"}, "cuda_graphs needs a CUDA device"),
    ({"no.such": 1}, "unknown parameter"),
])
def test_validation_reasons(changes, needle):
    new, reasons = params.validate(params.defaults(), changes)
    assert new is None
    assert any(needle in r for r in reasons), reasons


@pytest.mark.parametrize("name,value,needle", [
    ("resize_method", "stretch", "is not one of minimal"),
    ("colormap_range", "foo", "is not one of"),
    ("points.stride", 0, "out of range"),
    ("points.stride", 65, "out of range 1..64"),
    ("device", "gpu", "device"),
    ("colormap", "rainbowz", "is not one of"),
    ("depth.variant", "dpt_largee", "is not a depth variant"),
    ("segmentation.variant", "dpt_hybrid", "it is a depth variant"),
    ("cameras", None, "at least one namespace"),       # `-p cameras:=[]` reaches rclpy as an unset value
    ("cameras", ["left", 3], "list of strings"),
])
def test_start_up_values_are_checked_one_by_one(name, value, needle):
    """check_all (the start-up path: rclpy does not enforce choices) reports a bad single value."""
    reasons = params.check_all(params.defaults().replace({name: value}))
    assert any(name in r and needle in r for r in reasons), reasons


def test_check_value_checks_the_colour_maps_as_every_closed_set():
    """check_value is the one check of a single value, choices included: the colour maps were checked only among the
    checks across parameters (validate, check_all), so check_value('colormap', 'nope') found nothing wrong and its
    users (bench_node_stages, sros2_policy) took a value the node refuses. The reason is said once."""
    from dpt_ros import pipeline

    assert params.check_value("colormap", "nope") == f"colormap='nope' is not one of {', '.join(pipeline.COLORMAPS)}"
    assert all(params.check_value("colormap", name) is None for name in pipeline.COLORMAPS)
    assert params.check_value("colormap", 3) == "colormap must be of type str, got int"
    _, reasons = params.validate(params.defaults(), {"colormap": "nope"})
    assert reasons == [params.check_value("colormap", "nope")]
    assert params.check_all(params.defaults().replace({"colormap": "nope", "depth.weights": "random"})) == reasons


def test_a_whole_number_for_a_double_is_answered_in_the_form_it_was_given(tmp_path):
    """rclpy's refusal of `-p rate:=5` for a double got the YAML remedy 'rate: 5.0', which is what a parameters file
    takes but not what the user typed. value_source tells a -p rule from a file by rcl's rules (a later source over
    an earlier one in the same section; the sections in the order rcl first met them, a later matching one over an
    earlier); where the command line does not say (parameter_overrides, launch_ros), both forms are given."""
    error = "Trying to set parameter 'depth.scale' to '2' of type 'INTEGER', expecting type 'DOUBLE': depth.scale"
    head = " (a whole number is an integer to ROS: write it with a decimal point, "
    assert params.declare_hint("depth.scale", float, error, "param") == head + "-p depth.scale:=2.0)"
    assert params.declare_hint("depth.scale", float, error, "file") == head + "depth.scale: 2.0)"
    both = head + "-p depth.scale:=2.0 on the command line, depth.scale: 2.0 in a parameters file)"
    assert params.declare_hint("depth.scale", float, error) == both
    assert params.declare_refusal("depth.scale", float, error, "param") == (
        "Trying to set parameter 'depth.scale' to '2' of type 'INTEGER', expecting type 'DOUBLE'" + head
        + "-p depth.scale:=2.0)")

    node = "/robot/dpt_node"
    mine = tmp_path / "mine.yaml"
    mine.write_text("/robot/dpt_node:\n  ros__parameters:\n    depth:\n      scale: 2\n")
    every = tmp_path / "every.yaml"
    every.write_text("/**:\n  ros__parameters:\n    depth.scale: 3\n")
    other = tmp_path / "other.yaml"
    other.write_text("/other_node:\n  ros__parameters:\n    depth.scale: 3\n")

    def source(*args):
        return params.value_source(["prog", *args], node, "depth.scale")

    assert source("--ros-args", "-p", "depth.scale:=2") == "param"
    assert source("--ros-args", "--param", "depth.scale:=2") == "param"
    assert source("--ros-args", "--params-file", str(mine)) == "file"
    # a -p rule is the section /**: after a file's own section for the node, that section comes later and wins
    assert source("--ros-args", "-p", "depth.scale:=2", "--params-file", str(mine)) == "file"
    assert source("--ros-args", "--params-file", str(mine), "-p", "depth.scale:=2") == "param"
    # in one section (/**), the later source wins
    assert source("--ros-args", "-p", "depth.scale:=2", "--params-file", str(every)) == "file"
    assert source("--ros-args", "--params-file", str(every), "-p", "depth.scale:=2") == "param"
    # a file for another node, another parameter, no ROS arguments, a file rcl cannot read: not known
    assert source("--ros-args", "-p", "depth.scale:=2", "--params-file", str(other)) == "param"
    assert source("--ros-args", "--params-file", str(other)) is None
    assert source("--ros-args", "-p", "depth.shift:=2") is None
    assert source("-p", "depth.scale:=2") is None and source() is None
    assert source("--ros-args", "--params-file", str(tmp_path / "missing.yaml"), "-p", "depth.scale:=2") is None
    assert params.params_files(["--ros-args", "-p", "a:=1", "--params-file", str(mine), "--", "--params-file",
                                "x"]) == [str(mine)]


#: rclpy's refusals of a start-up value of each kind (its words, as the node gets them) and the remedy in each form:
#: a -p rule as a shell takes it, a parameters file's line, and both where value_source cannot say
HINTS = [
    ("cameras", list, "Trying to set parameter 'cameras' to 'left' of type 'STRING', expecting type "
                      "'STRING_ARRAY': cameras",
     " (a list: {})", ['-p cameras:="[a, b]"'], ["cameras: [a, b]"]),
    ("lazy", bool, "Trying to set parameter 'lazy' to '1' of type 'INTEGER', expecting type 'BOOL': lazy",
     " (a bool: write true or false, unquoted: {})", ["-p lazy:=true"], ["lazy: true"]),
    # a string that YAML (a -p value is YAML too) reads as a number is quoted for YAML, and that quote for the shell
    ("depth.variant", str, "Trying to set parameter 'depth.variant' to '1' of type 'INTEGER', expecting type "
                           "'STRING': depth.variant",
     " (a string: e.g. {}; one that YAML reads as a number or bool is quoted: {})",
     ["-p depth.variant:=dpt_hybrid", "-p depth.variant:=\"'1'\""], ["depth.variant: dpt_hybrid",
                                                                       "depth.variant: '1'"]),
    # quoted as given (-p source:=0 was told -p ...:="'1'", an example's value); a bool as YAML writes it
    ("depth.variant", str, "Trying to set parameter 'depth.variant' to '0' of type 'INTEGER', expecting type "
                           "'STRING': depth.variant",
     " (a string: e.g. {}; one that YAML reads as a number or bool is quoted: {})",
     ["-p depth.variant:=dpt_hybrid", "-p depth.variant:=\"'0'\""], ["depth.variant: dpt_hybrid",
                                                                       "depth.variant: '0'"]),
    ("colormap", str, "Trying to set parameter 'colormap' to 'False' of type 'BOOL', expecting type 'STRING': colormap",
     " (a string: e.g. {}; one that YAML reads as a number or bool is quoted: {})",
     ["-p colormap:=inferno", "-p colormap:=\"'false'\""], ["colormap: inferno", "colormap: 'false'"]),
    # segmentation classes written as a YAML list: the one comma-separated string the parameter takes, of those names
    ("points.exclude_classes", str, "Trying to set parameter 'points.exclude_classes' to '['person', 'car']' of type "
                                    "'STRING_ARRAY', expecting type 'STRING': points.exclude_classes",
     " (one string of comma-separated class names, not a list: {})", ['-p points.exclude_classes:="\'person, car\'"'],
     ["points.exclude_classes: 'person, car'"]),
    ("input_size", int, "Trying to set parameter 'input_size' to 'abc' of type 'STRING', expecting type 'INTEGER': "
                        "input_size",
     " (a whole number, unquoted and without a decimal point, e.g. {}; allowed: 0..2048 in steps of 32)",
     ["-p input_size:=0"], ["input_size: 0"]),
    ("depth.max", float, "Trying to set parameter 'depth.max' to 'far' of type 'STRING', expecting type 'DOUBLE': "
                         "depth.max",
     " (a number, unquoted, e.g. {})", ["-p depth.max:=1000.0"], ["depth.max: 1000.0"]),
    # a word YAML reads as a bool (-p max_rate:=off, meaning no limit): a number, e.g. the default (it had no remedy)
    ("max_rate", float, "Trying to set parameter 'max_rate' to 'False' of type 'BOOL', expecting type 'DOUBLE': "
                        "max_rate",
     " (a number, unquoted (YAML reads on, off, yes, no, true, false as a bool), e.g. {})", ["-p max_rate:=0.0"],
     ["max_rate: 0.0"]),
    ("depth.max", float, "Trying to set parameter 'depth.max' to '7' of type 'INTEGER', expecting type 'DOUBLE': "
                         "depth.max",
     " (a whole number is an integer to ROS: write it with a decimal point, {})", ["-p depth.max:=7.0"],
     ["depth.max: 7.0"]),
    # the allowed values nearest to the one given, each a way to write it; 0 is said for what it is, not as one
    ("input_size", int, "Trying to set parameter 'input_size' to '400' of type 'INTEGER'. Reason: Parameter "
                        "{input_size} doesn't comply with integer range: value not a valid step. Min: 0, max: 2048, "
                        "value: 400, step: 32",
     " (allowed: 0..2048 in steps of 32; nearest: {})", ["-p input_size:=384 or -p input_size:=416"],
     ["input_size: 384 or input_size: 416"]),
    ("input_size", int, "Trying to set parameter 'input_size' to '16' of type 'INTEGER'. Reason: Parameter "
                        "{input_size} doesn't comply with integer range: value not a valid step. Min: 0, max: 2048, "
                        "value: 16, step: 32",
     " (allowed: 0..2048 in steps of 32; nearest: {}, or 0 for the variant's own size)", ["-p input_size:=32"],
     ["input_size: 32"]),
    ("input_size", int, "Trying to set parameter 'input_size' out of range",
     " (allowed: 0..2048 in steps of 32, e.g. {})", ["-p input_size:=32"], ["input_size: 32"]),
    # a range without steps, an integer's and a double's: the allowed value nearest to the one given (it said only
    # the range, no value to write)
    ("points.stride", int, "Invalid parameter value (0) for parameter. Reason: Parameter points.stride out of range. "
                           "Min: 1, Max: 64, value: 0: points.stride",
     " (allowed: 1..64; nearest: {})", ["-p points.stride:=1"], ["points.stride: 1"]),
    ("compressed.depth_max", float, "Invalid parameter value (2000000.0) for parameter. Reason: Parameter "
                                    "compressed.depth_max out of range Min: 0.01, Max: 1000000.0, value: 2000000.0: "
                                    "compressed.depth_max",
     " (allowed: 0.01..1e+06; nearest: {})", ["-p compressed.depth_max:=1000000.0"],
     ["compressed.depth_max: 1000000.0"]),
    ("compressed.depth_max", float, "Invalid parameter value (nan) for parameter. Reason: Parameter "
                                    "compressed.depth_max out of range Min: 0.01, Max: 1000000.0, value: nan: "
                                    "compressed.depth_max",
     " (allowed: 0.01..1e+06)", [], []),
]


@pytest.mark.parametrize(("name", "kind", "error", "template", "rules", "lines"), HINTS,
                         ids=[f"{h[0]}-{i}" for i, h in enumerate(HINTS)])
def test_every_start_up_hint_is_in_the_form_the_value_was_given(name, kind, error, template, rules, lines):
    """A -p rule is answered with -p rules, a parameters file with its lines, an unknown source with both, for every
    kind of refused value (72efb1b did it for a whole number for a double; a bool, a string, a list, an integer and
    the allowed values of a stepped range kept the name:=value form, neither the shell's nor YAML's: a list so
    written is two words to a shell, and 'cameras:=[a, b] on the command line, cameras: [a, b] in YAML' was said to
    a -p rule too)."""
    assert params.declare_hint(name, kind, error, "param") == template.format(*rules)
    assert params.declare_hint(name, kind, error, "file") == template.format(*lines)
    assert params.declare_hint(name, kind, error) == template.format(
        *(f"{rule} on the command line, {line} in a parameters file" for rule, line in zip(rules, lines)))


def test_a_string_default_that_yaml_reads_otherwise_is_suggested_quoted(monkeypatch):
    """The example of a string parameter is its default, written as YAML reads it back as that string: bare where
    it is one, quoted where rcl would read a number or a bool (yes, on, 1e3, 0x10, inf) or YAML its own sign; the -p
    rule quoted again for the shell, which must hand rcl the YAML unchanged (test_ros_node_params gives rclpy such
    values)."""
    error = "Trying to set parameter 'depth.encoding' to '1' of type 'INTEGER', expecting type 'STRING': x"
    for default, yaml in (("32FC1", "32FC1"), ("yes", "'yes'"), ("On", "'On'"), ("1e3", "'1e3'"), ("0x10", "'0x10'"),
                          ("inf", "'inf'"), ("a b", "'a b'"), ("it's", "'it''s'"),
                          ('say "$HOME"!', "'say \"$HOME\"!'")):
        spec = dataclasses.replace(params.SPECS["depth.encoding"], default=default)
        monkeypatch.setattr(params, "SPECS", {**params.SPECS, "depth.encoding": spec})
        assert params.declare_hint("depth.encoding", str, error, "file").startswith(
            f" (a string: e.g. depth.encoding: {yaml}; ")
        hint = params.declare_hint("depth.encoding", str, error, "param")
        rule = hint[len(" (a string: e.g. "):hint.index("; one that YAML")]
        assert shlex.split(rule) == ["-p", f"depth.encoding:={yaml}"], rule


def test_a_live_remedy_is_a_ros2_param_set_command_that_gives_the_value_meant():
    """The third form of params._written, for a live change: ``ros2 param set NODE NAME VALUE`` as a shell takes it,
    whose VALUE `ros2 param set` reads back (rclpy.parameter.get_parameter_value, which ros2param's set verb calls:
    yaml.safe_load; ros2param itself is not installed here) as the value and type meant: a double keeps its point
    (PyYAML reads 1e-05 as a string), a string YAML reads as a number, bool or date is quoted for YAML and the quotes
    for the shell; several values, one command each."""
    from rclpy.parameter import get_parameter_value, parameter_value_to_python

    negative_number = re.compile(r"^-\d+$|^-\d*\.\d+$")   # what argparse takes for a value, not an option (< 3.13)
    for value in (2.0, 0.001, 1e-5, 1e20, -2.5, -3.2e-05, 7, True, False, "dpt_hybrid", "", "1", "yes", "On", "1e3",
                  "2026-12-06", "a b", "it's", 'say "$HOME"!', ["left"], ["left", "1", "y"], [""]):
        command = params._written("x.y", [params.yaml_value(value)], "set", "/robot/dpt_node")
        words = shlex.split(command)
        assert words[:5] == ["ros2", "param", "set", "/robot/dpt_node", "x.y"] and len(words) == 6, command
        # (-3.2e-05 was written so: ros2's argument parser took it for an option; -0.000032 is a value)
        assert not words[5].startswith("-") or negative_number.match(words[5]), command
        got = parameter_value_to_python(get_parameter_value(words[5]))
        assert got == value and type(got) is type(value), (command, got)
    assert params._written("input_size", ["96", "128"], "set", "/dpt_node") == \
        "ros2 param set /dpt_node input_size 96 or ros2 param set /dpt_node input_size 128"
    assert params._written("depth.variant", ["'1'"], "set", "/dpt_node") == \
        "ros2 param set /dpt_node depth.variant \"'1'\""


_DEPTH_VALID = "valid: dpt_large, dpt_hybrid, dpt_base, dpt_hybrid_kitti, dpt_hybrid_nyu, dpt_tiny (or '' to disable)"


@pytest.mark.parametrize("start,changes,reason", [
    # a variant of the other task: its command, after the weights' (a placeholder) where they are empty
    ({}, {"depth.variant": "dpt_hybrid_ade20k"},
     f"depth.variant='dpt_hybrid_ade20k' is not a depth variant; {_DEPTH_VALID}; it is a segmentation variant: "
     "ros2 param set /robot/dpt_node segmentation.weights <file> (or random), then "
     "ros2 param set /robot/dpt_node segmentation.variant dpt_hybrid_ade20k"),
    ({"segmentation.variant": "dpt_large_ade20k", "segmentation.weights": "random"},
     {"depth.variant": "dpt_hybrid_ade20k"},
     f"depth.variant='dpt_hybrid_ade20k' is not a depth variant; {_DEPTH_VALID}; it is a segmentation variant: "
     "ros2 param set /robot/dpt_node segmentation.variant dpt_hybrid_ade20k"),
    ({}, {"segmentation.variant": "dpt_hybrid"},
     "segmentation.variant='dpt_hybrid' is not a segmentation variant; valid: dpt_large_ade20k, dpt_hybrid_ade20k (or "
     "'' to disable); it is a depth variant: ros2 param set /robot/dpt_node depth.variant dpt_hybrid"),
    # weights cleared: a file or random; depth disabled only where segmentation runs (else both would be off)
    ({}, {"depth.weights": ""},
     "depth.weights is empty but depth.variant is 'dpt_tiny': ros2 param set /robot/dpt_node depth.weights <file> "
     "(or random)"),
    ({"segmentation.variant": "dpt_large_ade20k", "segmentation.weights": "random"}, {"depth.weights": ""},
     "depth.weights is empty but depth.variant is 'dpt_tiny': ros2 param set /robot/dpt_node depth.weights <file> "
     "(or random), or to disable depth: ros2 param set /robot/dpt_node depth.variant \"''\""),
    # a range's top set below its bottom alone (as ros2 param load sets a file's): the bottom first, or load again
    ({"depth.min": 20.0, "depth.max": 50.0}, {"depth.max": 10.0},
     "depth.min (20) must be below depth.max (10): set depth.min first (from a file, `ros2 param load` sets depth.max "
     "before depth.min, one by one, in the file's order, as ros2 param dump sorts them: load the file again)"),
    ({"depth.min": 20.0, "depth.max": 50.0}, {"depth.max": 10.0, "depth.min": 30.0},
     "depth.min (30) must be below depth.max (10)"),
    # a variant set without weights: they go first
    ({}, {"segmentation.variant": "dpt_hybrid_ade20k"},
     "segmentation.weights is empty but segmentation.variant is 'dpt_hybrid_ade20k': set its weights first, "
     "ros2 param set /robot/dpt_node segmentation.weights <file> (or random); from a file, `ros2 param load` sets "
     "segmentation.variant before segmentation.weights (one by one, in the file's order, as ros2 param dump sorts "
     "them): load the file again"),
    # fp16 or CUDA graphs on the CPU: the precision set, or (the device moved to the CPU) set first
    ({}, {"precision": "fp16"},
     "precision fp16 is not supported on the CPU (device 'cpu'); use ros2 param set /robot/dpt_node precision fp32 or "
     "ros2 param set /robot/dpt_node precision bf16"),
    ({"device": "auto", "precision": "fp16", "cuda_graphs": True}, {"device": "cpu"},
     "cuda_graphs needs a CUDA device (device 'cpu' runs on the CPU): ros2 param set /robot/dpt_node cuda_graphs false "
     "first; precision fp16 is not supported on the CPU (device 'cpu'); use ros2 param set /robot/dpt_node precision "
     "fp32 or ros2 param set /robot/dpt_node precision bf16 first"),
    ({}, {"cuda_graphs": True}, "cuda_graphs needs a CUDA device (device 'cpu' runs on the CPU)"),   # (leave it off)
])
def test_a_live_refusal_across_parameters_says_the_ros2_param_set_commands(start, changes, reason):
    """validate with the node's name (a live change: node.py passes its fully qualified name) says its remedies as
    the `ros2 param set` commands that take, a weights file as the placeholder <file>; without it (the tools,
    start-up's check_all) in the words it had."""
    s = params.defaults().replace({"depth.variant": "dpt_tiny", "depth.weights": "random", "device": "cpu", **start})
    new, reasons = params.validate(s, changes, "/robot/dpt_node")
    assert new is None and "; ".join(reasons) == reason, reasons
    _, words = params.validate(s, changes)
    assert "ros2 param set" not in "; ".join(words), words


def test_without_a_node_validate_says_its_remedies_in_words():
    s = params.defaults().replace({"depth.variant": "dpt_tiny", "depth.weights": "random", "device": "cpu"})
    assert params.validate(s, {"depth.weights": ""})[1] == [
        "depth.weights is empty but depth.variant is 'dpt_tiny': set depth.weights to a checkpoint file or 'random' "
        "(or depth.variant to '' to disable depth)"]
    assert params.validate(s, {"precision": "fp16"})[1] == [
        "precision fp16 is not supported on the CPU (device 'cpu'); use fp32 or bf16"]


def test_auto_device_without_cuda_is_the_cpu(monkeypatch):
    monkeypatch.setattr(dpt_ros, "cuda_available", lambda: False)
    s = params.defaults()
    assert s["device"] == "auto"
    assert any("cuda_graphs needs a CUDA device (device 'auto' runs on the CPU)" in r
               for r in params.validate(s, {"cuda_graphs": True})[1])
    assert any("fp16 is not supported on the CPU" in r for r in params.validate(s, {"precision": "fp16"})[1])
    monkeypatch.setattr(dpt_ros, "cuda_available", lambda: True)
    assert params.validate(s, {"cuda_graphs": True, "precision": "fp16"})[1] == []


def test_auto_is_resolved_by_one_rule(monkeypatch):
    """'auto' runs the model on CUDA where it is available, else on the CPU: target_refusals applied that rule inline
    (device == 'auto' and not _cuda_available()) beside the node's resolve_device; it now reads
    dpt_ros.resolved_device, which asks dpt_ros.cuda_available and gives by name (no torch imported for the launch
    files) the device resolve_device gives; the model's check_target (predict's and bench_model's --device) reads it
    too."""
    from dpt_ros.model.engine import check_target
    from dpt_ros.ros.node import resolve_device

    for name in ("auto", "cpu", "cuda", "cuda:1"):   # (this machine's answer, unpatched)
        assert torch.device(dpt_ros.resolved_device(name)) == resolve_device(name), name
    for cuda, auto in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(dpt_ros, "cuda_available", lambda cuda=cuda: cuda)
        assert [dpt_ros.resolved_device(n) for n in ("auto", "cpu", "cuda", "cuda:1")] == [auto, "cpu", "cuda", "cuda:1"]
        assert resolve_device("auto") == torch.device(auto)   # the node's: the same rule, not a copy of it
        if auto == "cpu" or torch.cuda.is_available():   # (check_target asks torch itself whether CUDA is usable)
            assert check_target("auto", "fp32")[0].type == auto
        on_cpu = ["--cuda-graphs needs a CUDA device (--device auto finds no CUDA on this machine); leave --cuda-graphs "
                  "out", "--precision fp16 is not supported on the CPU (--device auto finds no CUDA on this machine); "
                  "use --precision fp32 or bf16"]
        assert params.target_refusals("auto", "fp16", True, options=True) == ([] if cuda else on_cpu)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_index_is_checked_against_the_devices_present():
    n = torch.cuda.device_count()
    s = params.defaults()
    assert params.validate(s, {"device": f"cuda:{n - 1}"})[1] == []
    assert params.validate(s, {"device": "cuda"})[1] == []
    assert params.validate(s, {"device": f"cuda:{n}"})[1] == [f"device 'cuda:{n}': only {n} CUDA device(s) present"]


def test_weights_check(tmp_path, monkeypatch):
    f = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, f)
    s = params.defaults()
    assert params.validate(s, {"depth.weights": str(f)})[1] == []
    f.write_bytes(b"x")   # its first bytes are no checkpoint's: refused at once, not after a load
    assert params.validate(s, {"depth.weights": str(f)})[1] == [
        f"weights: {f}: not a PyTorch checkpoint (a zip or pickle file) nor a .safetensors file; it starts with text "
        f"('x') (give a checkpoint file, or 'random')"]
    assert params.validate(s, {"depth.weights": "random"})[1] == []
    assert params.validate(s, {"depth.weights": str(tmp_path / "x.pt")})[1] == [
        f"weights file {str(tmp_path / 'x.pt')!r} does not exist (give a checkpoint path, or 'random')"]
    # a relative path (README's weights/...pt) is the node's working folder's, which ros2 param set cannot see: said
    monkeypatch.chdir(tmp_path)
    assert params.validate(s, {"depth.weights": "weights/x.pt"})[1] == [
        f"weights file 'weights/x.pt' does not exist (relative to the node's working folder, {tmp_path}) (give a "
        f"checkpoint path, or 'random')"]
    # ~user of no user here (a parameters file from another machine): not there, as a shell has it; it was a
    # RuntimeError out of pathlib's expanduser (at start-up "cannot start: RuntimeError: ...", exit 1)
    assert params.validate(s, {"depth.weights": "~no_such_user_dpt/x.pt"})[1] == [
        f"weights file '~no_such_user_dpt/x.pt' does not exist (relative to the node's working folder, {tmp_path}) "
        f"(give a checkpoint path, or 'random')"]
    torch.save({"w": torch.zeros(2)}, tmp_path / "ok.pt")
    assert params.validate(s, {"depth.weights": "ok.pt"})[1] == []   # (there: taken)
    link = tmp_path / "link.pt"   # a name `ls` lists: said to be a link to nothing, not only "does not exist"
    link.symlink_to(tmp_path / "moved_away.pt")
    assert params.validate(s, {"depth.weights": str(link)})[1] == [
        f"weights file {str(link)!r} does not exist (a symbolic link to {tmp_path / 'moved_away.pt'}, which does not "
        f"exist: moved or deleted, or on a disk that is not mounted; fix the link or give the file itself) (give a "
        f"checkpoint path, or 'random')"]
    fifo = tmp_path / "pipe.pt"   # exists, but reading it would block the loader
    os.mkfifo(fifo)
    assert params.validate(s, {"depth.weights": str(fifo)})[1] == [
        f"weights file {str(fifo)!r} is not a regular file (give a checkpoint path, or 'random')"]
    # a folder is a Hugging Face snapshot: accepted when it holds the weights file the loader reads
    snap = tmp_path / "snapshot"
    snap.mkdir()
    reason = params.validate(s, {"depth.weights": str(snap)})[1][0]
    assert "is a directory without model.safetensors or pytorch_model.bin" in reason
    save_file({"w": torch.zeros(2)}, str(snap / "model.safetensors"))
    assert params.validate(s, {"depth.weights": str(snap)})[1] == []


def test_valid_camera_namespaces_and_weights_with_variant():
    s = params.defaults()
    assert params.validate(s, {"cameras": ["left", "/abs/cam", "~/private"]})[1] == []
    ok, reasons = params.validate(s, {"segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    assert reasons == [] and ok["segmentation.weights"] == "random"


def test_colormap_descriptor_lists_its_choices():
    """`ros2 param describe` shows the colour maps (README: turbo, inferno, ...), like every closed set."""
    d = params.SPECS["colormap"].descriptor()
    for name in ("turbo", "inferno", "gray"):
        assert repr(name) in d.description and name in d.additional_constraints


def test_readme_parameter_table_is_the_parameter_table():
    """README's Parameters section is params.markdown_table() (regenerate it when a parameter changes)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert params.markdown_table() in readme


def test_no_parameter_name_is_also_a_prefix_of_another():
    """`ros2 param dump` nests the names at their dots, and nested YAML cannot hold a value and a map under one key:
    a parameter named like another's prefix (colormap beside colormap.range, before the rename) breaks both."""
    names = [p.name for p in params.PARAMETERS]
    assert [n for n in names if any(m.startswith(n + ".") for m in names)] == []
    assert set(params.RENAMED.values()) <= set(names) and not set(params.RENAMED) & set(names)


def test_class_filters_name_classes_and_refuse_unlabeled_with_why():
    assert params.class_labels("person, car") == (13, 21)
    assert params.class_labels(" wall ,, flag") == (1, 150)
    with pytest.raises(ValueError, match=r"'unlabeled' \(label 0\) is no class a model predicts: every pixel gets one "
                                         r"of the classes 1..150"):
        params.class_labels("person, unlabeled")
    assert params.class_labels("Person, CAR") == (13, 21)   # any case
    with pytest.raises(ValueError, match=r"'PERSN' is not a segmentation class .*did you mean 'person'"):
        params.class_labels("PERSN")
    with pytest.raises(ValueError, match=r"'13' is a label id: give class names \(13 is 'person'; the class_names"):
        params.class_labels("13")
    with pytest.raises(ValueError, match=r"'151' is a label id: give class names \(151 is no class;"):
        params.class_labels("car, 151")


def test_the_readmes_quotes_of_range_refusals_are_what_the_node_says():
    """README's Parameters section quotes a refusal of each kind of range: an unstepped one names the range only
    (it once said every range's refusal gave the nearest values as commands; only input_size's, stepped, does)."""
    import re
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for name, value in (("cpu_threads", 300), ("input_size", 100)):
        said = params.range_refusal(params.SPECS[name], value, node="/dpt_node")
        quoted = re.search(rf'`ros2 param set /dpt_node {name} {value}`: "([^"]+)"', readme)
        assert quoted is not None, f"README quotes no refusal of {name} {value}"
        assert quoted.group(1) == said
