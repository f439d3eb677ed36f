"""Launch presets: what ``launch/*.launch.py`` declare and pass to the node, as testable code.

The launch files only turn launch arguments into strings and call :func:`node_parameters`,
:func:`remappings` and :func:`launch_arguments`; every decision is made here (no ``launch``
import, so it runs and is tested without a ROS distribution).

Parameters reach the node in this order (later wins): the task file ``config/<task>.yaml``, the
variant preset ``config/<variant>.yaml``, the user's ``config_file``, then the ``resolution`` / ``weights`` /
``segmentation_weights`` / ``device`` / ``precision`` / ``image_transport`` / ``camera_info_url`` /
``depth_reference`` / ``depth_reference_transport`` / ``use_sim_time`` arguments that were given (left at ``default`` / empty they override nothing,
so a ``config_file`` can set them).
"""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

import yaml

PACKAGE = "dpt_ros"
TASKS = ("depth", "segmentation", "dpt")
#: ``resolution`` launch argument: network input size; ``default`` = the variant's own size.
RESOLUTIONS = ("default", "256", "320", "384", "448", "480", "512", "576", "640", "768", "1024")
DEVICES_HELP = "auto (CUDA if available), cpu, cuda or cuda:N; 'default' keeps the YAML value (auto)"
#: ``precision`` launch argument; ``default`` keeps the YAML value (fp32 unless ``config_file`` says otherwise).
PRECISIONS = ("default", "fp32", "fp16", "bf16")
BOOLEANS = ("true", "false")
#: ``publication_mode`` launch argument -> RMW_FASTRTPS_PUBLICATION_MODE of the node's process (``default``: as set)
PUBLICATION_MODES = {"default": None, "synchronous": "SYNCHRONOUS", "asynchronous": "ASYNCHRONOUS"}


@dataclass(frozen=True)
class Argument:
    """One launch argument: name, default (a string), description, closed set of choices or None."""

    name: str
    default: str
    description: str
    choices: Optional[tuple[str, ...]] = None


def share_dir() -> Path:
    """``share/dpt_ros`` of an installed package (in the ament index, else beside the installed package), else the
    source checkout (config/, rviz/ live there)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            installed = Path(get_package_share_directory(PACKAGE))
            if (installed / "config").is_dir():
                return installed
        except (PackageNotFoundError, OSError):  # not installed / AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    here = Path(__file__).resolve().parents[2]   # the source checkout, or the site-packages of an install
    if (here / "config").is_dir():
        return here
    # pip install (or colcon) whose prefix no ament index lists (AMENT_PREFIX_PATH unset): setup.py's data_files are
    # in <prefix>/share/dpt_ros beside <prefix>/lib/pythonX.Y/site-packages (pip --target: in the target folder)
    for prefix in (here, *list(here.parents)[:3], Path(sys.prefix)):
        if (prefix / "share" / PACKAGE / "config").is_dir():
            return prefix / "share" / PACKAGE
    return here


def config_path(name: str) -> Path:
    return share_dir() / "config" / f"{name}.yaml"


def preset_variants(task: str) -> tuple[str, ...]:
    """Variants with a preset file in config/ whose task matches (``dpt``: depth variants)."""
    want = "segmentation" if task == "segmentation" else "depth"
    names = []
    for path in sorted((share_dir() / "config").glob("*.yaml")):   # the task files have no "# task:" line
        text = path.read_text()
        if f"# task: {want}" in text:
            names.append(path.stem)
    return tuple(names)


def preset_weights(task: str) -> dict[str, str]:
    """The variants of ``task`` whose preset file sets their own weights (dpt_tiny: ``random``), with that value:
    with ``weights`` left empty the node gets these, not the node's 'weights is not set' exit."""
    key = "segmentation" if task == "segmentation" else "depth"
    out = {}
    for name in preset_variants(task):
        section = (yaml.safe_load(config_path(name).read_text()) or {}).get("/**", {}).get("ros__parameters", {})
        weights = (section.get(key) or {}).get("weights")
        if weights:
            out[name] = str(weights)
    return out


def _weights_description(task: str) -> str:
    own = ", ".join(f"{name}: {value}" for name, value in preset_weights(task).items())
    return ("checkpoint file of the variant (official .pt from the DPT releases, or a Hugging Face weights file or "
            "snapshot folder), or 'random'; empty: " + (f"the variant preset's ({own}), else " if own else "")
            + "the node exits with instructions")


def default_variant(task: str) -> str:
    return "dpt_hybrid_ade20k" if task == "segmentation" else "dpt_hybrid"


def _variant_description(task: str) -> str:
    """The ``variant`` argument's description, with where the other task's variants go: launch refuses one not among
    the choices listing only these (``depth.launch.py variant:=dpt_hybrid_ade20k``), without a word of where it
    belongs; ``--show-args`` shows this."""
    if task == "segmentation":
        return (f"DPT segmentation variant; picks config/<variant>.yaml. A depth variant "
                f"({', '.join(preset_variants('depth'))}) goes to depth.launch.py's variant, or dpt.launch.py's (both "
                f"models)")
    return (f"DPT depth variant{' (the depth model)' if task == 'dpt' else ''}; picks config/<variant>.yaml. A "
            f"segmentation variant ({', '.join(preset_variants('segmentation'))}) goes to "
            + ("segmentation_variant" if task == "dpt" else
               "segmentation.launch.py's variant, or dpt.launch.py's segmentation_variant (both models)"))


def launch_arguments(task: str) -> list[Argument]:
    """The documented arguments of ``<task>.launch.py`` (task: depth, segmentation or dpt)."""
    _check_task(task)
    args = [
        Argument("variant", default_variant(task), _variant_description(task), preset_variants(task)),
        Argument("weights", "", _weights_description(task)),
    ]
    if task == "dpt":
        args += [
            Argument("segmentation_variant", default_variant("segmentation"),
                     "DPT segmentation variant (the segmentation model); a depth variant goes to variant",
                     preset_variants("segmentation")),
            Argument("segmentation_weights", "", _weights_description("segmentation")),
        ]
    args += [
        Argument("resolution", "default", "network input size in pixels; 'default' = the variant's own",
                 RESOLUTIONS),
        Argument("device", "default", "inference device: " + DEVICES_HELP),
        Argument("precision", "default", "inference precision (fp16/bf16 pay on a GPU; fp16 runs only there: on the "
                 "CPU the node exits, use fp32 or bf16); 'default' keeps the YAML value (fp32)", PRECISIONS),
        Argument("config_file", "", "extra parameter YAML (/**: ros__parameters:) applied after the presets"),
        Argument("image", "image", "input image topic (remaps the node's 'image')"),
        Argument("image_transport", "default", "raw: subscribe the image topic (sensor_msgs/Image); compressed: "
                 "<image>/compressed (CompressedImage, JPEG or PNG: a camera over Wi-Fi, a bag with only "
                 "image_raw/compressed); sets image_transport; 'default' keeps the YAML value (raw)",
                 ("default", "raw", "compressed")),
        Argument("camera_info", "camera_info", "input camera_info topic (remaps 'camera_info')"),
        Argument("camera_info_url", "", "camera calibration YAML or INI (file:///abs/path.yaml, "
                 "package://<pkg>/<path>) for a driver that publishes no camera_info; sets camera_info.url (the topic is then not used); "
                 "empty = the camera_info topic"),
    ]
    if task != "segmentation":
        args.append(Argument("depth_reference", "", "metric depth topic of the same view (e.g. "
                             "/camera/aligned_depth_to_color/image_raw): fit depth.scale / depth.shift to it for every "
                             "frame (sets depth.align, remaps 'depth_reference'); empty = off"))
        args.append(Argument("depth_reference_transport", "default", "raw: subscribe depth_reference "
                             "(sensor_msgs/Image); compressedDepth: <depth_reference>/compressedDepth (CompressedImage "
                             "of image_transport's compressedDepth, PNG: a depth camera over Wi-Fi, a bag with only "
                             "its compressedDepth); sets depth.align_transport; 'default' keeps the YAML value (raw)",
                             ("default", "raw", "compressedDepth")))
    args += [
        Argument("managed", "false", "run dpt_lifecycle_node, a managed (lifecycle) node: the model loads at "
                 "configure, the cameras are subscribed at activate, cleanup releases the model", BOOLEANS),
        Argument("autostart", "true", "with managed:=true, configure and activate it at launch; false: it waits "
                 "unconfigured for a lifecycle manager (nav2_lifecycle_manager, ros2 lifecycle set)", BOOLEANS),
        Argument("publication_mode", "default", "Fast DDS publication mode of the node's publishers "
                 "(RMW_FASTRTPS_PUBLICATION_MODE; rmw_fastrtps only): asynchronous hands each message to Fast DDS's "
                 "sender thread, which pays on a GPU machine with cores to spare; 'default' keeps the environment's "
                 "(synchronous unless set)", tuple(PUBLICATION_MODES)),
        Argument("namespace", "", "namespace of the node and its output topics"),
        Argument("enclave", "", "SROS2 enclave of the node (its --enclave), e.g. /dpt_ros/dpt_node; security is on "
                 "only with ROS_SECURITY_ENABLE=true; empty: rcl's (ROS_SECURITY_ENCLAVE_OVERRIDE, else /)"),
        Argument("use_sim_time", "false", "run the node (and RViz) on /clock's time, for recorded data played with "
                 "`ros2 bag play --clock` or a simulator; sets the use_sim_time parameter", BOOLEANS),
        Argument("use_rviz", "false", "also start RViz with rviz/dpt.rviz", BOOLEANS),
        Argument("rviz_fixed_frame", "camera_optical_frame",
                 "RViz fixed frame: the camera's frame_id (or a frame that TF connects to it)"),
    ]
    return args


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")


def _checked(arg: Argument, value: str) -> str:
    if arg.choices is not None and value not in arg.choices:
        raise ValueError(f"launch argument {arg.name}:={value!r} is not one of {', '.join(arg.choices)}")
    return value


def resolve(task: str, values: Mapping[str, str]) -> dict[str, str]:
    """Launch argument values with defaults filled in and choices checked."""
    _check_task(task)
    args = {a.name: a for a in launch_arguments(task)}
    unknown = set(values) - set(args)
    if unknown:
        raise ValueError(f"unknown launch argument(s) {sorted(unknown)}; valid: {', '.join(args)}")
    return {name: _checked(a, values.get(name, a.default)) for name, a in args.items()}


def argument_parameters(task: str) -> dict[str, str]:
    """The node parameter that each launch argument of ``<task>.launch.py`` sets (``variant`` through its preset
    file); the arguments not listed (image, managed, namespace, ...) set no parameter."""
    _check_task(task)
    model = "segmentation" if task == "segmentation" else "depth"
    out = {"variant": f"{model}.variant", "weights": f"{model}.weights"}
    if task == "dpt":
        out.update(segmentation_variant="segmentation.variant", segmentation_weights="segmentation.weights")
    out.update(resolution="input_size", device="device", precision="precision", image_transport="image_transport",
               camera_info_url="camera_info.url")
    if task != "segmentation":
        out["depth_reference"] = "depth.align"
        out["depth_reference_transport"] = "depth.align_transport"
    out["use_sim_time"] = "use_sim_time"
    return out


def ignored_arguments(task: str, given: Iterable[str]) -> list[str]:
    """What to say of the launch configurations ``given`` that ``<task>.launch.py`` does not declare but that look meant
    for it: ``ros2 launch`` takes any ``name:=value`` and the launch file never reads an undeclared one, so
    ``resoltion:=512`` ran at the default size, and ``depth.weights:=random`` (the node's own words when its weights
    are not set) ended the node with the same words again, without a word from the launch. Said: an argument of
    another of the launch files (``segmentation_weights`` to depth.launch.py), a parameter of the node (with the
    argument that sets it, else config_file) and a name close to one of this file's arguments. Other names are left
    alone: a launch file that includes this one passes its own configurations too."""
    from dpt_ros.ros.params import SPECS   # (it needs rcl_interfaces; the rest of this module needs no ROS package)

    names = [a.name for a in launch_arguments(task)]
    owners: dict[str, list[str]] = {}
    for other in TASKS:
        for a in launch_arguments(other):
            owners.setdefault(a.name, []).append(f"{other}.launch.py")
    setters = {parameter: argument for argument, parameter in argument_parameters(task).items()}
    out = []
    for name in sorted(set(given) - set(names)):
        if name in owners:
            whose = " and ".join(f"{owner}'s" for owner in owners[name])
            out.append(f"launch argument {name!r} is one of {whose}, not {task}.launch.py's: ignored")
        elif name in SPECS:
            how = (f"the launch argument {setters[name]} sets it (--show-args)" if name in setters else
                   f"set it in your parameter YAML (/**: ros__parameters: {name}: ...) given as config_file:=<file>")
            out.append(f"launch argument {name!r} is a parameter of the node, not one of {task}.launch.py's "
                       f"arguments: ignored; {how}")
        elif close := difflib.get_close_matches(name, names, n=1, cutoff=0.8):
            out.append(f"launch argument {name!r} is not one of {task}.launch.py's: ignored; did you mean "
                       f"{close[0]!r}? (--show-args lists them)")
    return out


def config_file_overrides(task: str, values: Mapping[str, str], given: Iterable[str]) -> list[str]:
    """What to say of the model variants that ``config_file`` sets over the launch arguments: ``variant`` (and
    ``segmentation_variant``) pick a preset, which ``config_file`` comes after, so a ``ros2 param dump`` of another
    node (it sets every parameter) overrode ``variant:=dpt_large`` without a word and the node started dpt_hybrid with
    the large weights ('holds a different DPT'), and a dump of a node running depth alone turned dpt.launch.py's
    segmentation off. Said: a variant argument among those ``given`` on the command line, or set to other than its
    default (by a parent launch file's include), that the file sets to another value, and one the file turns off (an
    empty variant), given or not. A file that cannot be read is left to the
    node, which says why."""
    from dpt_ros.ros.params import start_values   # (as ignored_arguments: the rest of this module needs no ROS)

    v = resolve(task, values)
    if not v["config_file"]:
        return []
    path = _config_file(v["config_file"])
    namespace = v["namespace"].strip("/")
    try:
        file_values = start_values([("file", str(path))], f"/{namespace}/dpt_node" if namespace else "/dpt_node")
    except ValueError:
        return []
    parameters = argument_parameters(task)
    # given also: a model argument set to other than its default, which a parent launch file's include gives (its
    # launch_arguments are no names on the command line; context.argv holds the parent's)
    defaults = {a.name: a.default for a in launch_arguments(task)}
    given = set(given) | {name for name in ("variant", "weights", "segmentation_variant", "segmentation_weights")
                          if name in v and v[name] != defaults[name]}
    out = []
    for argument, weights in (("variant", "weights"), ("segmentation_variant", "segmentation_weights")):
        if argument not in v or parameters[argument] not in file_values:
            continue
        name, ours, theirs = parameters[argument], v[argument], str(file_values[parameters[argument]])
        if theirs == ours or (theirs and argument not in given):
            continue
        what = f"the launch argument {argument}:={ours}" if argument in given else \
            f"the launch argument {argument}'s default, {ours}"
        if theirs:
            runs = f"the node runs {theirs}" + (f", with {weights}:={v[weights]}" if weights in given else "")
        else:
            runs = f"{task}.launch.py runs no {name.split('.')[0]} model"
        out.append(f"config_file {v['config_file']} sets {name}: {theirs or chr(39) * 2}"
                   f"{'' if theirs else ' (off)'}, which overrides {what} (config_file applies after the variant's "
                   f"preset): {runs}; to run {ours}, delete {name} from {path.name} (a ros2 param dump sets every "
                   f"parameter)" + (f"; to run {theirs}, leave {argument} out"
                                     + (f" and give {theirs}'s weights" if weights in given else "") if theirs else ""))
    return out


def node_parameters(task: str, values: Mapping[str, str]) -> list:
    """The ``parameters=[...]`` of the node: YAML file paths (str), then one dict of overrides."""
    v = resolve(task, values)
    variants = [v["variant"]] + ([v["segmentation_variant"]] if task == "dpt" else [])
    files = [config_path(task)] + [config_path(name) for name in variants]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"parameter file {f} not found")
    if v["config_file"]:
        files.append(_config_file(v["config_file"]))
    overrides: dict = {k: v[k] for k in ("device", "precision", "image_transport") if v[k] != "default"}
    if v["resolution"] != "default":
        overrides["input_size"] = int(v["resolution"])
    if v["weights"]:
        overrides[argument_parameters(task)["weights"]] = v["weights"]
    if task == "dpt" and v["segmentation_weights"]:
        overrides["segmentation.weights"] = v["segmentation_weights"]
    if v.get("depth_reference"):
        overrides["depth.align"] = True
    if v.get("depth_reference_transport", "default") != "default":
        overrides["depth.align_transport"] = v["depth_reference_transport"]
    if v["camera_info_url"]:
        overrides["camera_info.url"] = v["camera_info_url"]
    if v["use_sim_time"] == "true":   # (false sets nothing: a parent launch file's SetParameter('use_sim_time') holds)
        overrides["use_sim_time"] = True
    return [str(f) for f in files] + [overrides]


def _config_file(given: str) -> Path:
    """The ``config_file`` path, or FileNotFoundError saying what is there instead: 'parameter file nothere.yaml not
    found' named neither the argument nor, for a relative path, the folder it was looked in (the working folder of
    ros2 launch, which the node's process shares)."""
    path = Path(os.path.expanduser(given))
    if path.is_file():
        return path
    where = path if path.is_absolute() else Path.cwd() / path
    if path.is_dir():
        why = f"{where} is a folder: give your parameter YAML file (/**: ros__parameters:) itself"
    elif path.is_absolute():
        why = f"no file {where}: check the path"
    else:
        why = (f"no file {where} (a relative path is taken from the working folder, {Path.cwd()}): give its absolute "
               f"path")
    raise FileNotFoundError(f"launch argument config_file:={given}: {why}")


def remappings(task: str, values: Mapping[str, str]) -> list[tuple[str, str]]:
    v = resolve(task, values)
    pairs = [(name, v[name]) for name in ("image", "camera_info") if v[name] != name]
    return pairs + ([("depth_reference", v["depth_reference"])] if v.get("depth_reference") else [])


def ros_arguments(task: str, values: Mapping[str, str]) -> list[str]:
    """The node's ROS arguments beyond its parameters, remaps and namespace: ``--enclave`` of ``enclave`` (launch
    passes none of its own: SROS2 users had to set ROS_SECURITY_ENCLAVE_OVERRIDE, which every node of the launch
    takes, RViz and launch_ros's own alike)."""
    enclave = resolve(task, values)["enclave"]
    return ["--enclave", enclave] if enclave else []


def node_environment(task: str, values: Mapping[str, str]) -> dict[str, str]:
    """Environment variables the launch file adds to the node's process (``additional_env``): the Fast DDS
    publication mode of ``publication_mode``, none for ``default`` (the shell's setting, if any, stays)."""
    mode = PUBLICATION_MODES[resolve(task, values)["publication_mode"]]
    return {"RMW_FASTRTPS_PUBLICATION_MODE": mode} if mode else {}


def node_executable(task: str, values: Mapping[str, str]) -> str:
    """``dpt_lifecycle_node`` with ``managed:=true``, else ``dpt_node``."""
    return "dpt_lifecycle_node" if resolve(task, values)["managed"] == "true" else "dpt_node"


def autostart_transitions(task: str, values: Mapping[str, str]) -> tuple[str, ...]:
    """The lifecycle transitions the launch file requests once the managed node is up: configure, then activate
    once configured (``managed:=true autostart:=true``); none for a plain node or ``autostart:=false``."""
    v = resolve(task, values)
    return ("configure", "activate") if v["managed"] == "true" and v["autostart"] == "true" else ()


def rviz_config() -> str:
    return str(share_dir() / "rviz" / "dpt.rviz")


def fastdds_profile() -> str:
    """The bundled Fast DDS large-data profile (``config/fastdds_large_data.xml``) of the installed package, else of
    the source checkout: what the demo and the node benchmarks give their processes."""
    return str(share_dir() / "config" / "fastdds_large_data.xml")


def use_rviz(task: str, values: Mapping[str, str]) -> bool:
    return resolve(task, values)["use_rviz"] == "true"


def rviz_unavailable() -> Optional[str]:
    """Why ``use_rviz:=true`` cannot start RViz here (None when the rviz2 package is installed). The launch file
    asks before it starts anything: launch fails on a missing package only when it reaches that action, after
    the node has started, and the node was then left running without its launch."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return "use_rviz:=true needs RViz (the rviz2 package) and a ROS installation; none was found"
    try:
        get_package_prefix("rviz2")
    except (PackageNotFoundError, OSError):
        return ("use_rviz:=true needs RViz (the rviz2 package), which is not installed here (a ros-base install "
                "has none): install it (sudo apt install ros-$ROS_DISTRO-rviz2) or run RViz on another machine "
                "and leave use_rviz false")
    return None


def rviz_node_options(task: str, values: Mapping[str, str]) -> dict:
    """Keyword arguments of the rviz2 ``Node``: in the node's namespace and with the node's input
    remappings, so the config's relative topics (image, inverse_depth/colored, ...) are the node's."""
    v = resolve(task, values)
    options = dict(namespace=v["namespace"], remappings=remappings(task, values),
                   arguments=["-d", rviz_config(), "-f", v["rviz_fixed_frame"]])
    if v["use_sim_time"] == "true":   # on the node's clock: its outputs carry the bag's stamps
        options["parameters"] = [{"use_sim_time": True}]
    return options
