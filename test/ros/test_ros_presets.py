"""Launch presets and configuration files: what the launch files pass to the node."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dpt_ros.model import VARIANTS
from dpt_ros.ros import params, presets

ROOT = Path(__file__).resolve().parents[2]


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_config_files_hold_only_declared_parameters_with_valid_values(path):
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["/**"] and list(doc["/**"]) == ["ros__parameters"]
    values = dict(_flatten(doc["/**"]["ros__parameters"]))
    base = params.defaults().replace({"depth.weights": "random", "segmentation.weights": "random"})  # weights: launch
    for name, value in values.items():
        assert name in params.SPECS, f"{path.name}: unknown parameter {name}"
    new, reasons = params.validate(base, {k: v for k, v in values.items() if not k.endswith("weights")})
    assert reasons == [] or reasons == ["depth.variant and segmentation.variant are both empty: enable at least one task"], reasons


def test_every_variant_has_a_preset_and_presets_match_tasks():
    depth = presets.preset_variants("depth")
    seg = presets.preset_variants("segmentation")
    assert set(depth) | set(seg) == set(VARIANTS)
    assert all(VARIANTS[v].task == "depth" for v in depth)
    assert all(VARIANTS[v].task == "segmentation" for v in seg)
    assert presets.preset_variants("dpt") == depth


def test_launch_arguments_are_documented_with_choices():
    for task in presets.TASKS:
        args = {a.name: a for a in presets.launch_arguments(task)}
        for required in ("variant", "resolution", "weights", "device", "precision", "config_file", "image",
                         "camera_info", "namespace", "use_rviz"):
            assert required in args and args[required].description
        assert args["variant"].default in args["variant"].choices
        assert args["precision"].choices == ("default", "fp32", "fp16", "bf16")
        assert args["device"].default == args["precision"].default == "default"
        assert args["use_rviz"].choices == ("true", "false")
    assert "dpt_large" in {a.name: a for a in presets.launch_arguments("depth")}["variant"].choices
    inputs = ["resolution", "device", "precision", "config_file", "image", "image_transport", "camera_info",
              "camera_info_url"]
    rest = ["managed", "autostart", "publication_mode", "namespace", "enclave", "use_sim_time", "use_rviz",
            "rviz_fixed_frame"]
    # one model: no segmentation_* arguments; a depth task: depth_reference and its transport
    reference = ["depth_reference", "depth_reference_transport"]
    assert [a.name for a in presets.launch_arguments("depth")] == ["variant", "weights", *inputs, *reference, *rest]
    assert [a.name for a in presets.launch_arguments("segmentation")] == ["variant", "weights", *inputs, *rest]
    assert [a.name for a in presets.launch_arguments("dpt")] == ["variant", "weights", "segmentation_variant",
                                                                 "segmentation_weights", *inputs, *reference, *rest]


def test_weights_left_empty_say_what_the_variant_preset_gives():
    """`depth.launch.py variant:=dpt_tiny` with weights left empty runs on random weights (config/dpt_tiny.yaml sets
    them; the empty argument overrides nothing), but the weights argument (--show-args) and README's row said the node
    then exits with instructions; they name the presets that set weights."""
    assert presets.preset_weights("depth") == presets.preset_weights("dpt") == {"dpt_tiny": "random"}
    assert presets.preset_weights("segmentation") == {}
    tiny = presets.node_parameters("depth", {"variant": "dpt_tiny"})
    assert "depth.weights" not in tiny[-1]
    assert yaml.safe_load(Path(tiny[1]).read_text())["/**"]["ros__parameters"]["depth"]["weights"] == "random"
    described = {task: {a.name: a.description for a in presets.launch_arguments(task)} for task in presets.TASKS}
    for task in ("depth", "dpt"):
        assert described[task]["weights"].endswith(
            "or 'random'; empty: the variant preset's (dpt_tiny: random), else the node exits with instructions")
    assert described["segmentation"]["weights"].endswith("or 'random'; empty: the node exits with instructions")
    # dpt.launch.py's second model: no segmentation preset sets weights (its description said nothing of empty)
    assert described["dpt"]["segmentation_weights"] == described["segmentation"]["weights"]
    readme = (ROOT / "README.md").read_text()
    assert ("| `weights` | `\"\"` | | checkpoint file (or Hugging Face snapshot folder), or `random`; empty: the variant "
            "preset's (`dpt_tiny`: `random`), else the node exits with instructions |") in readme


def test_a_variant_argument_says_where_the_other_tasks_variants_go():
    """launch refuses `depth.launch.py variant:=dpt_hybrid_ade20k` listing the depth variants only, with no word of
    where a segmentation variant goes; its words cannot change, the argument's description (--show-args) can: each
    variant argument names the other task's variants and the argument that takes them."""
    depth, segmentation = presets.preset_variants("depth"), presets.preset_variants("segmentation")
    described = {task: {a.name: a.description for a in presets.launch_arguments(task)} for task in presets.TASKS}
    assert described["depth"]["variant"].startswith("DPT depth variant; picks config/<variant>.yaml. ")
    assert described["depth"]["variant"].endswith(
        f"A segmentation variant ({', '.join(segmentation)}) goes to segmentation.launch.py's variant, or "
        f"dpt.launch.py's segmentation_variant (both models)")
    assert described["segmentation"]["variant"].endswith(
        f"A depth variant ({', '.join(depth)}) goes to depth.launch.py's variant, or dpt.launch.py's (both models)")
    assert described["dpt"]["variant"].endswith(f"A segmentation variant ({', '.join(segmentation)}) goes to "
                                                f"segmentation_variant")
    assert described["dpt"]["segmentation_variant"].endswith("; a depth variant goes to variant")
    assert "dpt_hybrid_ade20k" in segmentation and "dpt_hybrid" in depth


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros not installed (no ROS distribution)")
def test_depth_launch_refuses_a_segmentation_variant_and_its_description_says_where_it_goes():
    """With the real launch API: depth.launch.py's variant argument refuses dpt_hybrid_ade20k (launch's words,
    the depth variants only), and its description, which `ros2 launch ... --show-args` prints, names
    segmentation.launch.py and dpt.launch.py's segmentation_variant."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("depth_launch", ROOT / "launch" / "depth.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    variant = next(e for e in module.generate_launch_description().entities
                   if isinstance(e, DeclareLaunchArgument) and e.name == "variant")
    context = LaunchContext()
    context.launch_configurations["variant"] = "dpt_hybrid_ade20k"
    with pytest.raises(RuntimeError, match="provided value \"dpt_hybrid_ade20k\" is not valid") as refused:
        variant.visit(context)
    assert "segmentation.launch.py" not in str(refused.value)   # (launch's words: why the description says it)
    assert "segmentation.launch.py's variant, or dpt.launch.py's segmentation_variant" in variant.description
    assert variant.choices == list(presets.preset_variants("depth"))


def test_every_resolution_choice_is_an_input_size_the_node_accepts():
    """A launch choice the node then refuses would fail at start-up: each is a multiple of 32 in range."""
    choices = {a.name: a for a in presets.launch_arguments("depth")}["resolution"].choices
    assert choices[0] == "default" and len(choices) == 11
    for c in choices[1:]:
        overrides = presets.node_parameters("depth", {"resolution": c})[-1]
        assert overrides == {"input_size": int(c)}
        assert params.validate(params.defaults(), overrides)[1] == [], c


@pytest.mark.parametrize("task", ["depth", "dpt"])
def test_a_presets_depth_range_reaches_its_compressed_depth(task):
    """depth/compressedDepth reads back depths beyond compressed.depth_max as no data: the KITTI preset published
    depth up to 80 m (depth.max) but its compressedDepth, at the default 10 m, lost every depth past 10 m of a
    driving scene. Each variant's preset, merged as the launch file gives it, keeps compressed.depth_max at or
    beyond its depth.max where it sets one."""
    defaults = params.defaults()
    for variant in presets.preset_variants(task):
        merged = dict(defaults.values)
        for f in presets.node_parameters(task, {"variant": variant})[:-1]:
            merged.update(_flatten(yaml.safe_load(Path(f).read_text())["/**"]["ros__parameters"]))
        if merged["depth.max"] != defaults["depth.max"]:   # (a range of the preset's own: KITTI 80 m, NYU 10 m)
            assert merged["compressed.depth_max"] >= merged["depth.max"], variant
        given = {k: v for k, v in merged.items() if k in defaults.values}
        given.update({"depth.weights": "random", "segmentation.weights": "random"})   # (the launch file's weights:=)
        assert params.validate(defaults, given)[1] == [], variant


def test_first_command_users_type():
    """ros2 launch dpt_ros depth.launch.py variant:=dpt_large resolution:=384 weights:=<file>"""
    p = presets.node_parameters("depth", {"variant": "dpt_large", "resolution": "384", "weights": "/w/large.pt"})
    files, overrides = p[:-1], p[-1]
    assert [Path(f).name for f in files] == ["depth.yaml", "dpt_large.yaml"]
    assert overrides == {"input_size": 384, "depth.weights": "/w/large.pt"}
    # later files win: the preset selects the variant
    merged = {}
    for f in files:
        merged.update(_flatten(yaml.safe_load(Path(f).read_text())["/**"]["ros__parameters"]))
    merged.update(overrides)
    assert merged["depth.variant"] == "dpt_large" and merged["segmentation.variant"] == ""


def test_presets_for_segmentation_and_both_tasks(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("/**:\n  ros__parameters:\n    lazy: false\n")
    p = presets.node_parameters("segmentation", {"weights": "random", "config_file": str(user)})
    assert [Path(f).name for f in p[:-1]] == ["segmentation.yaml", "dpt_hybrid_ade20k.yaml", "mine.yaml"]
    assert p[-1] == {"segmentation.weights": "random"}   # nothing the user did not give overrides mine.yaml
    p = presets.node_parameters("dpt", {"variant": "dpt_hybrid_kitti", "segmentation_variant": "dpt_large_ade20k",
                                        "weights": "k.pt", "segmentation_weights": "s.pt", "device": "cuda",
                                        "precision": "fp16"})
    assert [Path(f).name for f in p[:-1]] == ["dpt.yaml", "dpt_hybrid_kitti.yaml", "dpt_large_ade20k.yaml"]
    assert p[-1] == {"device": "cuda", "precision": "fp16", "depth.weights": "k.pt", "segmentation.weights": "s.pt"}


def test_a_variant_argument_that_config_file_overrides_is_said(tmp_path):
    """`depth.launch.py variant:=dpt_large weights:=large.pt config_file:=tuned.yaml`, tuned.yaml a ros2 param dump of a
    dpt_hybrid node, ran dpt_hybrid with the large weights (the variant picks its preset, which config_file comes
    after) and the node ended with 'holds a different DPT'; dpt.launch.py with a dump of a node running depth alone
    ran no segmentation; neither said why. The launch now says which argument the file overrides and how to keep it."""
    tuned = tmp_path / "tuned.yaml"   # (as ros2 param dump writes it: the node's section, every parameter)
    tuned.write_text("/dpt_node:\n  ros__parameters:\n    depth.variant: dpt_hybrid\n    depth.weights: hybrid.pt\n"
                     "    segmentation.variant: ''\n    segmentation.weights: ''\n    lazy: true\n")
    given = ["variant", "weights", "config_file"]
    values = {"variant": "dpt_large", "weights": "large.pt", "config_file": str(tuned)}
    assert presets.config_file_overrides("depth", values, given) == [
        f"config_file {tuned} sets depth.variant: dpt_hybrid, which overrides the launch argument variant:=dpt_large "
        f"(config_file applies after the variant's preset): the node runs dpt_hybrid, with weights:=large.pt; to run "
        f"dpt_large, delete depth.variant from tuned.yaml (a ros2 param dump sets every parameter); to run "
        f"dpt_hybrid, leave variant out and give dpt_hybrid's weights"]
    files = presets.node_parameters("depth", values)   # (the rule stays README's: the file's variant runs)
    assert files[-2] == str(tuned) and "depth.variant" not in files[-1]
    values = {"weights": "d.pt", "segmentation_weights": "s.pt", "config_file": str(tuned)}
    assert presets.config_file_overrides("dpt", values, ["weights", "segmentation_weights", "config_file"]) == [
        f"config_file {tuned} sets segmentation.variant: '' (off), which overrides the launch argument "
        f"segmentation_variant's default, dpt_hybrid_ade20k (config_file applies after the variant's preset): "
        f"dpt.launch.py runs no segmentation model; to run dpt_hybrid_ade20k, delete segmentation.variant from "
        f"tuned.yaml (a ros2 param dump sets every parameter)"]
    # nothing to say: the file's variant where none was typed, the typed one repeated, a file for another node
    assert presets.config_file_overrides("depth", {"config_file": str(tuned)}, ["config_file"]) == []
    assert presets.config_file_overrides("depth", {"variant": "dpt_hybrid", "config_file": str(tuned)}, given) == []
    values = {"variant": "dpt_large", "config_file": str(tuned), "namespace": "robot"}
    assert presets.config_file_overrides("depth", values, given + ["namespace"]) == []
    tuned.write_text(tuned.read_text().replace("/dpt_node:", "/robot/dpt_node:"))   # the node's, in its namespace
    assert [w.split(",")[0] for w in presets.config_file_overrides("depth", values, given)] == [
        f"config_file {tuned} sets depth.variant: dpt_hybrid"]


def test_a_variant_a_parent_launch_file_gives_that_config_file_overrides_is_said(tmp_path):
    """A parent launch file's IncludeLaunchDescription(depth.launch.py, launch_arguments={'variant': 'dpt_large',
    'weights': 'large.pt', 'config_file': 'tuned.yaml'}): its arguments are no names on the command line (context.argv
    holds the parent's own), so the dump's dpt_hybrid overrode variant:=dpt_large without the warning that the same
    arguments typed after ros2 launch give. A variant (weights) set to other than its default is said as given."""
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("/dpt_node:\n  ros__parameters:\n    depth.variant: dpt_hybrid\n    depth.weights: hybrid.pt\n")
    values = {"variant": "dpt_large", "weights": "large.pt", "config_file": str(tuned)}
    typed = presets.config_file_overrides("depth", values, ["variant", "weights", "config_file"])
    assert len(typed) == 1 and "overrides the launch argument variant:=dpt_large" in typed[0]
    assert "the node runs dpt_hybrid, with weights:=large.pt" in typed[0]
    assert presets.config_file_overrides("depth", values, ["use_rviz"]) == typed   # (the parent's own argv)
    # the default variant from a parent: nothing to say, as when typed by no one
    assert presets.config_file_overrides("depth", {"variant": "dpt_hybrid", "config_file": str(tuned)}, []) == []


def test_config_file_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        presets.node_parameters("depth", {"config_file": str(tmp_path)})
    assert str(e.value) == (f"launch argument config_file:={tmp_path}: {tmp_path} is a folder: give your parameter "
                            f"YAML file (/**: ros__parameters:) itself")


def test_a_config_file_that_is_not_there_is_named_with_the_folder_it_was_looked_in(tmp_path, monkeypatch):
    """`ros2 launch dpt_ros depth.launch.py config_file:=mine.yaml` from another folder than mine.yaml's stopped the
    launch with "parameter file mine.yaml not found": not which argument, nor where a relative path is looked for (the
    working folder, which the node's process shares: the node reads it from there when it is found)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        presets.node_parameters("depth", {"config_file": "mine.yaml"})
    assert str(e.value) == (f"launch argument config_file:=mine.yaml: no file {tmp_path}/mine.yaml (a relative path is "
                            f"taken from the working folder, {tmp_path}): give its absolute path")
    with pytest.raises(FileNotFoundError) as e:
        presets.node_parameters("depth", {"config_file": f"{tmp_path}/nope.yaml"})
    assert str(e.value) == (f"launch argument config_file:={tmp_path}/nope.yaml: no file {tmp_path}/nope.yaml: check "
                            f"the path")
    (tmp_path / "mine.yaml").write_text("/**:\n  ros__parameters:\n    lazy: false\n")
    assert presets.node_parameters("depth", {"config_file": "mine.yaml"})[-2] == "mine.yaml"   # found: as given


def test_config_file_with_a_home_relative_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine.yaml").write_text("/**:\n  ros__parameters:\n    lazy: false\n")
    p = presets.node_parameters("depth", {"config_file": "~/mine.yaml"})
    assert p[-2] == str(tmp_path / "mine.yaml")


def test_share_dir_prefers_an_installed_package_with_its_config(tmp_path, monkeypatch):
    """An ament prefix holding dpt_ros (resource index marker + share/dpt_ros/config) is where presets
    come from; one without config/ (a broken or partial install) falls back to the source checkout."""
    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "dpt_ros").write_text("")
    (prefix / "share" / "dpt_ros").mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert presets.share_dir() == ROOT
    (prefix / "share" / "dpt_ros" / "config").mkdir()
    (prefix / "share" / "dpt_ros" / "config" / "dpt_hybrid.yaml").write_text("# task: depth\n")
    assert presets.share_dir() == prefix / "share" / "dpt_ros"
    assert presets.config_path("depth") == prefix / "share" / "dpt_ros" / "config" / "depth.yaml"
    assert presets.preset_variants("depth") == ("dpt_hybrid",)


def test_a_pip_installed_package_finds_its_presets_without_an_ament_prefix(tmp_path):
    """``pip install .`` (or ``--prefix``) puts setup.py's data_files in <prefix>/share/dpt_ros, which no ament index
    names unless AMENT_PREFIX_PATH lists <prefix>: share_dir() fell back to site-packages, so the launch presets listed
    no variant and the demo pointed Fast DDS at a profile that is not there (its 'XMLPARSER Error realpath failed').
    The installed share folder is found beside the package, sros2_policy's files in it too."""
    prefix = tmp_path / "venv"
    site = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    shutil.copytree(ROOT / "dpt_ros", site / "dpt_ros", ignore=shutil.ignore_patterns("__pycache__"))
    share = prefix / "share" / "dpt_ros"
    for folder, pattern in (("config", "*.yaml"), ("config", "*.xml"), ("rviz", "*.rviz")):   # setup.py's data_files
        (share / folder).mkdir(parents=True, exist_ok=True)
        for f in (ROOT / folder).glob(pattern):
            shutil.copy(f, share / folder)
    shutil.copytree(ROOT / "docs" / "sros2", share / "sros2")
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = ("from dpt_ros.ros import presets; print(presets.__file__); print(presets.share_dir()); "
            "print(','.join(presets.preset_variants('depth'))); print(presets.fastdds_profile()); "
            "print(presets.rviz_config()); from dpt_ros.tools import sros2_policy; print(sros2_policy.INTERFACES)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0] == str(site / "dpt_ros" / "ros" / "presets.py")   # the installed copy, not the checkout
    assert out[1] == str(share)
    assert out[2].split(",") == list(presets.preset_variants("depth")) and "dpt_hybrid" in out[2].split(",")
    assert out[3] == str(share / "config" / "fastdds_large_data.xml") and Path(out[3]).is_file()
    assert out[4] == str(share / "rviz" / "dpt.rviz") and Path(out[4]).is_file()
    assert out[5] == str(share / "sros2" / "dpt_ros_interfaces.yaml") and Path(out[5]).is_file()


def test_bad_launch_values_are_refused():
    with pytest.raises(ValueError, match="resolution:='333' is not one of"):
        presets.node_parameters("depth", {"resolution": "333"})
    with pytest.raises(ValueError, match="variant:='dpt_large_ade20k'"):
        presets.node_parameters("depth", {"variant": "dpt_large_ade20k"})
    with pytest.raises(ValueError, match="unknown launch argument"):
        presets.node_parameters("depth", {"resoltion": "384"})
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        presets.node_parameters("depth", {"config_file": "/nope.yaml"})
    with pytest.raises(ValueError, match="unknown task"):
        presets.launch_arguments("flow")


def test_a_misspelt_or_misplaced_launch_argument_is_named():
    """ros2 launch takes any name:=value and a launch file ignores what it does not declare: resoltion:=512 ran at the
    default size, segmentation_weights:= on depth.launch.py loaded nothing, without a word. The launch file now warns
    of a name close to one of its arguments and of another launch file's argument; a name unlike any (a configuration
    of a launch file that includes this one) is left alone."""
    given = ["resoltion", "use_rivz", "segmentation_weights", "depth_reference", "use_sim_time", "robot_name",
             "variant", "weights"]
    assert presets.ignored_arguments("segmentation", given) == [
        "launch argument 'depth_reference' is one of depth.launch.py's and dpt.launch.py's, not "
        "segmentation.launch.py's: ignored",
        "launch argument 'resoltion' is not one of segmentation.launch.py's: ignored; did you mean 'resolution'? "
        "(--show-args lists them)",
        "launch argument 'segmentation_weights' is one of dpt.launch.py's, not segmentation.launch.py's: ignored",
        "launch argument 'use_rivz' is not one of segmentation.launch.py's: ignored; did you mean 'use_rviz'? "
        "(--show-args lists them)"]
    assert presets.ignored_arguments("dpt", given) == [
        "launch argument 'resoltion' is not one of dpt.launch.py's: ignored; did you mean 'resolution'? "
        "(--show-args lists them)",
        "launch argument 'use_rivz' is not one of dpt.launch.py's: ignored; did you mean 'use_rviz'? "
        "(--show-args lists them)"]
    for task in presets.TASKS:   # every argument of the file itself, given or not, is fine
        assert presets.ignored_arguments(task, [a.name for a in presets.launch_arguments(task)]) == []


def test_a_node_parameter_given_as_a_launch_argument_is_named_with_what_sets_it():
    """`ros2 launch dpt_ros depth.launch.py depth.weights:=random`, what the node says when its weights are not set
    (and README's first Troubleshooting row), was ignored without a word: the node exited again with the same line.
    A parameter of the node given as a launch argument is now named, with the launch argument that sets it (the
    task's own: weights is segmentation.weights on segmentation.launch.py), else config_file."""
    given = ["depth.weights", "segmentation.weights", "input_size", "camera_info.url", "depth.align", "colormap",
             "device", "use_sim_time"]
    node = "is a parameter of the node, not one of {}.launch.py's arguments: ignored; "
    yaml_file = "set it in your parameter YAML (/**: ros__parameters: {}: ...) given as config_file:=<file>"
    argument = "the launch argument {} sets it (--show-args)"
    expected = {
        "depth": {"camera_info.url": argument.format("camera_info_url"), "colormap": yaml_file.format("colormap"),
                  "depth.align": argument.format("depth_reference"), "depth.weights": argument.format("weights"),
                  "input_size": argument.format("resolution"),
                  "segmentation.weights": yaml_file.format("segmentation.weights")},
        "segmentation": {"camera_info.url": argument.format("camera_info_url"),
                         "colormap": yaml_file.format("colormap"), "depth.align": yaml_file.format("depth.align"),
                         "depth.weights": yaml_file.format("depth.weights"),
                         "input_size": argument.format("resolution"),
                         "segmentation.weights": argument.format("weights")},
        "dpt": {"camera_info.url": argument.format("camera_info_url"), "colormap": yaml_file.format("colormap"),
                "depth.align": argument.format("depth_reference"), "depth.weights": argument.format("weights"),
                "input_size": argument.format("resolution"),
                "segmentation.weights": argument.format("segmentation_weights")},
    }
    for task in presets.TASKS:   # (device and use_sim_time are arguments too: nothing to say)
        assert presets.ignored_arguments(task, given) == [
            f"launch argument {name!r} {node.format(task)}{how}" for name, how in expected[task].items()], task
        # the argument named sets that very parameter
        for name, how in expected[task].items():
            if how.startswith("the launch argument"):
                assert presets.argument_parameters(task)[how.split()[3]] == name
    readme = " ".join((ROOT / "README.md").read_text().split())   # README's Launch files paragraph quotes it
    assert '(`depth.weights:=random`: "the launch argument weights sets it";' in readme
    assert "(`-p depth.weights:=random`; to a launch file: `weights:=random`)" in readme   # the Troubleshooting row
    weights = presets.argument_parameters("segmentation")["weights"]
    assert presets.node_parameters("segmentation", {"weights": "random"})[-1] == {weights: "random"}


def test_use_sim_time_puts_the_node_and_rviz_on_the_clock_of_a_played_bag():
    """`ros2 launch dpt_ros depth.launch.py use_sim_time:=true` beside `ros2 bag play my.bag --clock`, as users replay
    recorded data: the launch files declared no use_sim_time and ignored it without a word, so the node ran on the wall
    clock (the bag's frames days old, ages of days) and RViz too. Now the node and RViz get the parameter; false sets
    nothing, so a parent launch file's SetParameter('use_sim_time', True) still reaches the node."""
    for task in presets.TASKS:
        assert presets.node_parameters(task, {"use_sim_time": "true"})[-1] == {"use_sim_time": True}
        assert presets.node_parameters(task, {"use_sim_time": "false"})[-1] == {}
        assert presets.node_parameters(task, {})[-1] == {}
        assert presets.rviz_node_options(task, {"use_sim_time": "true"})["parameters"] == [{"use_sim_time": True}]
        assert "parameters" not in presets.rviz_node_options(task, {})
        assert presets.ignored_arguments(task, ["use_sim_time"]) == []
    assert presets.ignored_arguments("depth", ["use_sim_tim"]) == [
        "launch argument 'use_sim_tim' is not one of depth.launch.py's: ignored; did you mean 'use_sim_time'? "
        "(--show-args lists them)"]
    with pytest.raises(ValueError, match="use_sim_time:='yes' is not one of true, false"):
        presets.node_parameters("depth", {"use_sim_time": "yes"})


def test_remappings_and_rviz():
    assert presets.remappings("depth", {"image": "/cam/image_raw", "camera_info": "/cam/camera_info"}) == [
        ("image", "/cam/image_raw"), ("camera_info", "/cam/camera_info")]
    assert presets.remappings("depth", {}) == []
    # depth_reference: per-frame alignment to a depth camera, one argument for the remap and depth.align
    ref = {"depth_reference": "/cam/aligned_depth_to_color/image_raw"}
    assert presets.remappings("dpt", ref) == [("depth_reference", "/cam/aligned_depth_to_color/image_raw")]
    assert presets.node_parameters("depth", ref)[-1] == {"depth.align": True}
    assert "depth.align" not in presets.node_parameters("depth", {})[-1]
    # a depth camera offering only its compressedDepth (Wi-Fi, a bag): the base topic and the transport, as image's
    given = {**ref, "depth_reference_transport": "compressedDepth"}
    assert presets.node_parameters("depth", given)[-1] == {"depth.align": True, "depth.align_transport": "compressedDepth"}
    assert presets.remappings("depth", given) == [("depth_reference", "/cam/aligned_depth_to_color/image_raw")]
    assert "depth.align_transport" not in presets.node_parameters("dpt", ref)[-1]
    assert presets.ignored_arguments("depth", ["depth_reference_transport"]) == []
    assert "depth_reference_transport" not in {a.name for a in presets.launch_arguments("segmentation")}
    # camera_info_url: a calibration file instead of the topic, for every task
    for task in presets.TASKS:
        url = {"camera_info_url": "file:///calib/webcam.yaml"}
        assert presets.node_parameters(task, url)[-1] == {"camera_info.url": "file:///calib/webcam.yaml"}
        assert "camera_info.url" not in presets.node_parameters(task, {})[-1] and presets.remappings(task, url) == []
    # image_transport: a camera that offers only image_raw/compressed (Wi-Fi, a bag), for every task; it was no
    # argument (ignored, with the advice to write a parameter YAML for config_file)
    for task in presets.TASKS:
        given = {"image": "/cam/image_raw", "image_transport": "compressed"}
        assert presets.node_parameters(task, given)[-1] == {"image_transport": "compressed"}
        assert presets.remappings(task, given) == [("image", "/cam/image_raw")]
        assert presets.node_parameters(task, {"image_transport": "raw"})[-1] == {"image_transport": "raw"}
        assert "image_transport" not in presets.node_parameters(task, {})[-1]
        assert presets.ignored_arguments(task, ["image_transport"]) == []
    with pytest.raises(ValueError, match="launch argument image_transport:='theora' is not one of default, raw, "
                                         "compressed"):
        presets.resolve("depth", {"image_transport": "theora"})
    with pytest.raises(ValueError, match="unknown launch argument"):
        presets.resolve("segmentation", ref)
    assert presets.use_rviz("depth", {"use_rviz": "true"}) and not presets.use_rviz("depth", {})
    rviz = yaml.safe_load(Path(presets.rviz_config()).read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    assert topics == {"image", "inverse_depth/colored", "segmentation/colored", "points"}
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    # RViz runs beside the node: same namespace and input remappings, fixed frame from the camera
    opts = presets.rviz_node_options("depth", {"namespace": "front", "image": "/cam/image_raw",
                                               "rviz_fixed_frame": "cam_color_optical_frame"})
    assert opts == dict(namespace="front", remappings=[("image", "/cam/image_raw")],
                        arguments=["-d", presets.rviz_config(), "-f", "cam_color_optical_frame"])
    assert presets.rviz_node_options("dpt", {})["arguments"][-2:] == ["-f", "camera_optical_frame"]


def _ament_prefix(root: Path, *packages: str) -> Path:
    """An install prefix whose ament index lists ``packages`` (what colcon or apt writes for each)."""
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    for name in packages:
        (index / name).write_text("")
    return root


def test_use_rviz_where_rviz_is_not_installed_is_refused_with_the_way_out(tmp_path, monkeypatch):
    """launch fails on a missing package only when it reaches that action, after dpt_node has started, which was
    then left running without its launch: the launch file asks first (the ament index, as ros2 launch does)."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(_ament_prefix(tmp_path / "ros_base", "rclpy", "sensor_msgs")))
    reason = presets.rviz_unavailable()
    assert reason.startswith("use_rviz:=true needs RViz (the rviz2 package), which is not installed here")
    assert "sudo apt install ros-$ROS_DISTRO-rviz2" in reason
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'ros_base'}:{_ament_prefix(tmp_path / 'desktop', 'rviz2')}")
    assert presets.rviz_unavailable() is None


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros not installed (no ROS distribution)")
@pytest.mark.parametrize("task", presets.TASKS)
def test_launch_files_build(task):
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location(f"{task}_launch", ROOT / "launch" / f"{task}.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    declared = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    assert {d.name for d in declared} == {a.name for a in presets.launch_arguments(task)}
    context = LaunchContext()
    for d in declared:
        d.visit(context)
    actions = ld.entities[-1].execute(context)
    assert actions and actions[0].node_executable == "dpt_node" and len(actions) == 1
    from launch.substitutions import TextSubstitution   # (the command line's plain words; the others need ament)

    def words(action):
        return ["".join(p.text for p in part) if all(isinstance(p, TextSubstitution) for p in part) else None
                for part in action.cmd]
    assert words(actions[0]).count("--ros-args") == 1   # (no enclave: none of its own before launch_ros's)
    context.launch_configurations.update(use_rviz="true", namespace="front")
    if presets.rviz_unavailable():   # refused before any action is made
        with pytest.raises(RuntimeError, match="needs RViz"):
            ld.entities[-1].execute(context)
    else:
        actions = ld.entities[-1].execute(context)
        assert [a.node_executable for a in actions] == ["dpt_node", "rviz2"]
    context.launch_configurations.update(use_rviz="false", managed="true", enclave="/dpt_ros/dpt_node")
    actions = ld.entities[-1].execute(context)
    assert [type(a).__name__ for a in actions] == ["RegisterEventHandler", "LifecycleNode", "EmitEvent"]
    assert actions[1].node_executable == "dpt_lifecycle_node"
    cmd = words(actions[1])
    assert cmd[cmd.index("--enclave") - 1:cmd.index("--enclave") + 2] == ["--ros-args", "--enclave", "/dpt_ros/dpt_node"]
    context.launch_configurations.update(autostart="false")
    actions = ld.entities[-1].execute(context)
    assert [type(a).__name__ for a in actions] == ["LifecycleNode"]


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros not installed (no ROS distribution)")
def test_autostart_activates_the_first_configure_only():
    """managed:=true (autostart): the launch activates the node once it is first configured, not again after a later
    configure: README's way to change cameras (deactivate, cleanup, set cameras, configure, activate) ended with an
    activate that failed, the launch having activated the node on its own after the configure. The launch file's
    handler runs in a real LaunchService, fed the transition events the node publishes (no process is started)."""
    from launch import LaunchContext, LaunchDescription, LaunchService
    from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
    from launch.event_handler import EventHandler
    from launch_ros.events.lifecycle import ChangeState, StateTransition
    from lifecycle_msgs.msg import State, Transition, TransitionEvent

    spec = importlib.util.spec_from_file_location("depth_launch", ROOT / "launch" / "depth.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    context = LaunchContext()
    for d in ld.entities:
        if isinstance(d, DeclareLaunchArgument):
            d.visit(context)
    context.launch_configurations.update(managed="true")
    handler, node, first = ld.entities[-1].execute(context)
    assert isinstance(handler, RegisterEventHandler) and first.event.transition_id == Transition.TRANSITION_CONFIGURE

    def passed(start: str, goal: str) -> EmitEvent:   # what the node publishes on transition_event, as launch_ros
        return EmitEvent(event=StateTransition(action=node, msg=TransitionEvent(   # turns it into an event
            start_state=State(label=start), goal_state=State(label=goal))))

    requested = []   # the transitions the launch asks of the node
    recorder = RegisterEventHandler(EventHandler(matcher=lambda e: isinstance(e, ChangeState), entities=OpaqueFunction(
        function=lambda context: requested.append(context.locals.event.transition_id))))
    configure = [passed("unconfigured", "configuring"), passed("configuring", "inactive")]
    service = LaunchService()
    service.include_launch_description(LaunchDescription([
        recorder, handler,
        *configure, passed("inactive", "activating"), passed("activating", "active"),    # the launch's autostart
        passed("active", "deactivating"), passed("deactivating", "inactive"),              # then the user's
        passed("inactive", "cleaningup"), passed("cleaningup", "unconfigured"), *configure]))
    assert service.run() == 0
    assert requested == [Transition.TRANSITION_ACTIVATE]   # after the first configure only


def test_managed_launch_runs_the_lifecycle_node_and_autostarts_it():
    assert presets.node_executable("depth", {}) == "dpt_node" and presets.autostart_transitions("depth", {}) == ()
    for task in presets.TASKS:
        assert presets.node_executable(task, {"managed": "true"}) == "dpt_lifecycle_node"
        assert presets.autostart_transitions(task, {"managed": "true"}) == ("configure", "activate")
        assert presets.autostart_transitions(task, {"managed": "true", "autostart": "false"}) == ()
        assert presets.autostart_transitions(task, {"managed": "false", "autostart": "true"}) == ()
    with pytest.raises(ValueError, match="managed"):
        presets.node_executable("depth", {"managed": "yes"})


def test_launch_files_are_thin():
    for task in presets.TASKS:
        text = (ROOT / "launch" / f"{task}.launch.py").read_text()
        assert f'generate("{task}")' in text and len(text.splitlines()) < 20


def test_enclave_gives_the_node_its_sros2_enclave_only():
    """enclave:=/dpt_ros/dpt_node passes --enclave to the node's process (launch_ros's ros_arguments), nothing when
    empty: SROS2 users of the launch files had only ROS_SECURITY_ENCLAVE_OVERRIDE, which every node of the launch
    takes (RViz's and launch_ros's own too), and which the node's policy does not allow them."""
    for task in presets.TASKS:
        assert {a.name: a for a in presets.launch_arguments(task)}["enclave"].default == ""
        assert presets.ros_arguments(task, {}) == []
        assert presets.ros_arguments(task, {"enclave": "/dpt_ros/dpt_node"}) == ["--enclave", "/dpt_ros/dpt_node"]
        assert "enclave" not in str(presets.rviz_node_options(task, {"enclave": "/dpt_ros/dpt_node"}))


def test_publication_mode_sets_the_fast_dds_mode_of_the_node_process_only_when_asked():
    """publication_mode:=asynchronous puts RMW_FASTRTPS_PUBLICATION_MODE=ASYNCHRONOUS in the node's environment
    (launch's additional_env); default adds nothing, so a mode set in the shell stays; other values are refused
    with the choices."""
    for task in presets.TASKS:
        arg = {a.name: a for a in presets.launch_arguments(task)}["publication_mode"]
        assert arg.default == "default" and arg.choices == ("default", "synchronous", "asynchronous")
        assert presets.node_environment(task, {}) == {}
        assert presets.node_environment(task, {"publication_mode": "asynchronous"}) == {
            "RMW_FASTRTPS_PUBLICATION_MODE": "ASYNCHRONOUS"}
        assert presets.node_environment(task, {"publication_mode": "synchronous"}) == {
            "RMW_FASTRTPS_PUBLICATION_MODE": "SYNCHRONOUS"}
        with pytest.raises(ValueError, match="publication_mode:='ASYNC' is not one of default, synchronous, asynchronous"):
            presets.node_environment(task, {"publication_mode": "ASYNC"})


def test_the_precision_argument_says_fp16_runs_on_a_gpu_only():
    """precision's description said 'fp16/bf16 need a GPU for speed', as if fp16 ran on the CPU, only slowly: the
    node refuses it there and exits ('precision fp16 is not supported on the CPU'), which `precision:=fp16` on a
    machine without CUDA (device auto) meets at start-up. It now says so; bf16 runs on the CPU."""
    for task in presets.TASKS:
        description = {a.name: a for a in presets.launch_arguments(task)}["precision"].description
        assert "fp16 runs only there: on the CPU the node exits, use fp32 or bf16" in description, description
        for precision, refused in (("fp16", True), ("bf16", False), ("fp32", False)):
            overrides = presets.node_parameters(task, {"precision": precision, "device": "cpu"})[-1]
            assert overrides == {"device": "cpu", "precision": precision}
            reasons = params.validate(params.defaults(), overrides)[1]
            assert bool(reasons) == refused, (precision, reasons)
