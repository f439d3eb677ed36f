"""README's tables and commands against what they document: the Topics table against the node (every topic's name,
message type and default QoS, and no topic beyond the table), the launch-argument table against the launch files,
the weights table against the variant table, the tools' options, paths and test names against the repository, the
Troubleshooting section's quotes of the node's messages and /diagnostics keys against the node (the Parameters table
is checked in test_ros_params_table.py)."""
import ast
import functools
import importlib
import re
from pathlib import Path
from typing import Optional

from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage

from dpt_ros.ros.testing import set_params, wait_for

DOMAIN = 78

README = Path(__file__).resolve().parents[2] / "README.md"
#: the README and the pages it links for detail (docs/benchmarks.md): what holds for the README's commands, paths and
#: tables holds for them too
DOCS = [README, *sorted((README.parent / "docs").glob("*.md"))]
NODE_PY = README.parent / "dpt_ros" / "ros" / "node.py"


def _section(title: str, end: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start:text.index(end, start)]


def _topic_rows() -> list[dict]:
    """The rows of README's Topics table: names, dir, type, QoS text (a 'same' / 'as `image`' resolved)."""
    rows, last = [], {}
    for line in _section("### Topics", "Compressed copies").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 5, f"README Topics row with {len(cells)} cells, not 5: {line[:120]}"
        names, direction, kind, _, qos_text = cells
        qos_text = qos_text.split(";")[0]
        if qos_text == "same" or qos_text.startswith("as `"):
            qos_text = last[direction.split()[0]]
        last.setdefault(direction.split()[0], qos_text)
        rows.append({"names": re.findall(r"`([^`]+)`", names), "dir": direction.split()[0],
                     "type": kind.strip("`"), "qos": qos_text})
    return rows


def _expected_qos(text: str) -> tuple:
    """(reliability, durability, keep-last depth) that a README QoS cell names."""
    reliability = ReliabilityPolicy.BEST_EFFORT if "best effort" in text else ReliabilityPolicy.RELIABLE
    durability = DurabilityPolicy.TRANSIENT_LOCAL if "transient local" in text else DurabilityPolicy.VOLATILE
    depth = re.search(r"(?:keep last|depth) (\d+)", text)
    return reliability, durability, int(depth.group(1)) if depth else None


def _qos_of(entity) -> tuple:
    q = entity.qos_profile
    assert q.history == HistoryPolicy.KEEP_LAST
    return q.reliability, q.durability, q.depth


def _type_name(msg_type) -> str:
    module = msg_type.__module__.split(".")[0]
    return f"{module}/{msg_type.__name__}"


def test_readme_tables_keep_each_row_on_one_line():
    """A Markdown table row broken over two lines renders as a cut row and a bogus one (the Topics table's
    image/compressed row lost its QoS cell that way, the rest of its text becoming a row of its own); a row needs
    its header's number of cells too (a '|' inside a code span splits a cell)."""
    for doc in DOCS:
        columns = None
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            where = f"{doc.name}:{number}"
            if line.startswith("|"):
                assert line.rstrip().endswith("|"), f"{where}: table row does not end with '|': {line[-60:]}"
                cells = len(re.split(r"(?<!\\)\|", line.strip()[1:-1]))
                columns = columns or cells
                assert cells == columns, f"{where}: {cells} cells in a table of {columns} columns"
            elif columns and line.strip():
                raise AssertionError(f"{where}: a table row goes on past its line: {line[:60]}")
            else:
                columns = None


def test_the_topics_table_is_what_the_node_publishes_and_subscribes(harness):
    node = harness.start_node(**{"depth.align": True})
    cam = node.cameras[0]
    entities = {("out", name): pub for name, pub in cam.pubs.items()}
    entities[("out", "/diagnostics")] = node._diag_pub
    entities.update({("in", name): sub for name, sub in cam.subs.items()})
    for pub in getattr(node, "_label_pubs", []):
        entities[("out", "label_info")] = pub
    assert set_params(harness, node, image_transport="compressed")[0].successful
    wait_for(lambda: cam.subs["image"].msg_type is CompressedImage, what="the image/compressed subscription")
    entities[("in", "image/compressed")] = cam.subs["image"]
    assert set_params(harness, node, **{"depth.align_transport": "compressedDepth"})[0].successful
    wait_for(lambda: cam.subs["depth_reference"].msg_type is CompressedImage,
             what="the depth_reference/compressedDepth subscription")
    entities[("in", "depth_reference/compressedDepth")] = cam.subs["depth_reference"]
    documented = set()
    for row in _topic_rows():
        for name in row["names"]:
            key = (row["dir"], name)
            documented.add(key)
            if key not in entities:
                # published only where vision_msgs is installed
                assert name == "label_info" and importlib.util.find_spec("vision_msgs") is None, key
                continue
            entity = entities[key]
            assert _type_name(entity.msg_type) == row["type"], (name, entity.msg_type)
            reliability, durability, depth = _expected_qos(row["qos"])
            assert _qos_of(entity) == (reliability, durability, depth or entity.qos_profile.depth), (name, row["qos"])
            if depth is None:   # (no depth in the README cell: label_info's latched message needs only the last)
                assert entity.qos_profile.depth == 1, name
    assert set(entities) <= documented, set(entities) - documented
    # what the graph shows of the node: the table's topics, resolved, and the standard /rosout and /parameter_events
    graph = {name: types[0] for name, types in node.get_publisher_names_and_types_by_node(node.get_name(), "/")}
    assert set(graph) == {node.resolve_topic_name(name) for (d, name) in entities if d == "out"} | {
        "/rosout", "/parameter_events"}
    assert graph["/points"] == "sensor_msgs/msg/PointCloud2"
    assert graph["/depth/camera_info"] == "sensor_msgs/msg/CameraInfo"


def test_the_weights_table_is_the_variant_table():
    """README's 'Getting the official weights' table names every released variant once, with the file name, URL and
    network size of dpt_ros/model/variants.py (what the node's and the weights tool's messages give): a newcomer
    downloads what this table says."""
    from dpt_ros.model import VARIANTS

    rows = {}
    for line in _section("## Getting the official weights", "```").splitlines():
        if line.startswith("| `"):
            variant, file, url, task = (c.strip() for c in line.strip()[1:-1].split(" | "))
            assert variant.strip("`") not in rows, f"README weights table lists {variant} twice"
            rows[variant.strip("`")] = (file.strip("`"), url, task)
    assert set(rows) == {n for n, v in VARIANTS.items() if v.released}
    for name, (file, url, task) in rows.items():
        v = VARIANTS[name]
        assert (file, url) == (v.checkpoint, v.url), name
        assert v.sha256_prefix in file, name
        if v.task == "segmentation":
            assert task == "ADE20K segmentation", name
        elif v.metric is None:
            assert task == "relative inverse depth", name
        else:
            assert task.startswith("metric depth") and f"network {v.net_size[0]}x{v.net_size[1]}, height x width" \
                in task, name


def _launch_rows() -> list[list[str]]:
    """The cells of README's launch-argument table."""
    rows = []
    for line in _section("| argument | default |", "Parameters are applied in this order").splitlines()[2:]:
        if line.startswith("| `"):
            rows.append([c.strip() for c in line.strip()[1:-1].split("|")])
    return rows


def test_the_launch_argument_table_is_what_the_launch_files_declare():
    """Every argument of README's Launch files table, with the launch files it belongs to, its default and its
    choices, is presets.launch_arguments()' (what the three launch files declare), and no argument is left out."""
    from dpt_ros.ros import presets

    declared = {task: {a.name: a for a in presets.launch_arguments(task)} for task in presets.TASKS}
    documented = {task: set() for task in presets.TASKS}
    for names_cell, default_cell, choices_cell, _ in _launch_rows():
        names_part, _, files = names_cell.partition("(")
        names = re.findall(r"`([^`]+)`", names_part)
        tasks = re.findall(r"(\w+)\.launch\.py", files) or list(presets.TASKS)
        defaults_part, _, default_note = default_cell.partition("(")
        defaults = [d.strip('"') for d in re.findall(r"`([^`]*)`", defaults_part)]
        assert len(defaults) in (1, len(names)), names_cell
        for i, name in enumerate(names):
            for task in tasks:
                assert name in declared[task], f"README names launch argument {name!r}, not one of {task}.launch.py's"
                documented[task].add(name)
                arg = declared[task][name]
                default = defaults[i if len(defaults) == len(names) else 0]
                note = dict(re.findall(r"(\w+): `([^`]*)`", default_note))   # "(segmentation: `...`)"
                assert arg.default == note.get(task, default), (task, name, arg.default, default_cell)
                if choices_cell == "" or i > 0:   # (a row of two arguments: its choices are the first one's)
                    assert arg.choices is None, (task, name, arg.choices)
                elif choices_cell == "segmentation variants":
                    assert arg.choices == presets.preset_variants("segmentation"), (task, name)
                else:
                    per_task = dict(re.findall(r"(\w+): ([^;]+)", choices_cell))
                    listed = per_task.get("segmentation" if task == "segmentation" else "depth", choices_cell)
                    assert set(arg.choices) == {c.strip() for c in listed.split(",")}, (task, name, arg.choices)
    assert {t: set(d) for t, d in declared.items()} == documented


# the console scripts of setup.py that are tools with command-line options, and their modules
_TOOL_ALIASES = {"dpt_predict": "predict"}


def _commands(text: str) -> list[str]:
    """Each fenced code block's lines (a trailing backslash joins a line to the next) and each inline code span
    (which may run over a line break) of the README."""
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
        commands += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    commands += re.findall(r"`([^`]+)`", prose)
    return commands


def test_every_tool_option_the_readme_gives_exists(capsys):
    """The README shows each tool with its options (`python -m dpt_ros.tools.calibrate_depth --inverse ...`,
    `gpu_check --e2e-publication-modes ...`): every option named after a tool's name is one its parser has, as
    its --help lists it (a renamed or dropped option leaves the README's command failing with 'unrecognized
    arguments')."""
    tools = {p.stem for p in (README.parent / "dpt_ros" / "tools").glob("*.py") if p.stem != "__init__"}
    options = {}

    def options_of(tool: str) -> set:
        if tool not in options:
            module = importlib.import_module(f"dpt_ros.tools.{tool}")
            capsys.readouterr()
            try:
                module.main(["--help"])
            except SystemExit as e:
                assert e.code == 0, tool
            options[tool] = set(re.findall(r"--[a-z][a-z0-9-]*", capsys.readouterr().out))
            assert "--help" in options[tool], tool
        return options[tool]

    checked = []
    for command in [line for doc in DOCS for line in _commands(doc.read_text())]:
        tool = None
        for token in command.split():
            name = _TOOL_ALIASES.get(token, token.removeprefix("dpt_ros.tools."))
            if name in tools:
                tool = name
            elif token in ("ros2", "python", "python3", "make", "pip", "colcon", "&&", "|", ";", "#"):
                tool = None
            elif tool and re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", token):
                option = token.split("=")[0]
                assert option in options_of(tool), f"README: `{command.strip()[:100]}`: {tool} has no {option}"
                checked.append((tool, option))
    assert len(checked) >= 30 and {t for t, _ in checked} >= {"calibrate_depth", "gpu_check", "sros2_policy",
                                                               "weights", "predict", "bench_e2e"}, checked


def test_every_repository_path_and_test_the_readme_names_exists():
    """Files and folders of this repository that the README names in code (`config/fastdds_large_data.xml`,
    `test/ros/test_ros_launch_run.py`, `dpt_ros/ros/presets.py`, ...), bare test file names, and the test
    functions it names (`test_cuda_node_decodes_raw_bytes_like_the_cpu`) exist: a rename leaves no dangling name."""
    root = README.parent
    texts = [doc.read_text() for doc in DOCS]
    text = "\n".join(texts)
    spans = set().union(*(set(_commands(t)) | set(re.findall(r"`([^`\s]+)`", t)) for t in texts))
    tops = ("dpt_ros/", "test/", "config/", "docs/", "launch/", "rviz/", ".ci/", "requirements")
    paths = {s.split(":")[0].rstrip(",;") for span in spans for s in span.split()
             if s.startswith(tops) and not re.search(r"[<>{}*]|\.\.\.", s)}
    test_files = {p.name for p in (root / "test").rglob("test_*.py")}
    names = set(re.findall(r"`(test_\w+)`", text))
    assert len(paths) >= 15 and len(names) >= 10, (paths, names)
    assert [p for p in sorted(paths) if not (root / p).exists()] == []
    assert [n for n in sorted(set(re.findall(r"\b(test_\w+\.py)\b", text))) if n not in test_files] == []
    sources = "\n".join(p.read_text() for p in (root / "test").rglob("test_*.py"))
    assert [n for n in sorted(names) if not re.search(rf"^\s*def {n}\(", sources, re.M)] == []


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation but '-' and '_' dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_readme_and_docs_lands_on_a_heading():
    """The README's links into itself (`[Performance](#performance)`) and into docs/ (`docs/benchmarks.md`), and
    docs' links back (`../README.md#performance`), name a file that exists and a heading it has: a heading renamed
    or a section moved to another page leaves a link that opens the page's top, or nothing."""
    checked = 0
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue   # a web address
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            assert linked.exists(), f"{doc.name}: link {target!r}: no file {linked}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", linked.read_text(), flags=re.S | re.M),
                                      re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{doc.name}: link {target!r}: no such heading in " \
                                                                 f"{linked.name}"
            checked += 1
    assert checked >= 15, checked


def _module_domains(path: Path) -> set:
    """The ROS domains a test module holds (test/conftest.py): its DOMAINS, else its DOMAIN, read from its
    module-level assignments (DOMAIN, LANES, DOMAINS, in order) without importing it."""
    names = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("DOMAIN", "LANES", "DOMAINS"):
            names[node.targets[0].id] = eval(compile(ast.Expression(node.value), str(path), "eval"),
                                             {"__builtins__": {}}, dict(names))
    if "DOMAINS" in names:
        return set(names["DOMAINS"])
    return {names["DOMAIN"]} if "DOMAIN" in names else set()


def test_the_ros_domains_the_readme_gives_the_tests_are_theirs():
    """README's 'Tests and CI' gives the ROS_DOMAIN_IDs of the test modules (someone running other ROS processes
    beside the suite keeps them off those): every domain a module holds is in that range, and both of its ends are
    used (a new module outside the range, or the range left wider, is caught); and gpu_check's ROS steps' domains
    (its rehearsal's in the tests too), which are none of the modules'."""
    from dpt_ros.tools.gpu_check import ROS_DOMAINS

    text = README.read_text()
    found = re.search(r"`ROS_DOMAIN_ID`s (\d+)-(\d+) \(a few modules share one\)", text)
    assert found, "README's Tests and CI no longer gives the test modules' ROS domains"
    low, high = map(int, found.groups())
    domains = set().union(*(_module_domains(p) for p in (README.parent / "test").rglob("test_*.py")))
    assert (min(domains), max(domains)) == (low, high), sorted(domains)
    found = re.search(r"the first free ones of (\d+), (\d+), (\d+), then (\d+)-(\d+) \(`ROS_DOMAINS`", text)
    assert found, "README's Tests and CI no longer gives gpu_check's ROS domains"
    first, low, high = tuple(map(int, found.groups()[:3])), *map(int, found.groups()[3:])
    assert ROS_DOMAINS == (*first, *range(low, high + 1)) and not domains & set(ROS_DOMAINS)


def test_the_gpu_check_budget_split_the_readme_gives_is_gpu_checks():
    """README's Tests and CI gives gpu_check's pytest step's share of the budget, its most seconds and what a budget
    gives it: the share of the budget less the grace of a step (GRACE_S), at most PYTEST_MOST_S (it said '260 s of
    --budget 540', the cap, where 540 s gave 229 s)."""
    from dpt_ros.tools.gpu_check import GRACE_S, PYTEST_MOST_S, PYTEST_SHARE

    text = " ".join(README.read_text().split())
    found = re.search(r"Its pytest step gets up to (\d+) % of what the budget leaves \(the budget less (\d+) s\), at "
                      r"most (\d+) s \((\d+) s of `--budget (\d+)`, (\d+) s from `--budget (\d+)`\)", text)
    assert found, "README's Tests and CI no longer gives gpu_check's pytest step's share of the budget"
    share, grace, most, got, budget, most_again, from_budget = map(int, found.groups())
    assert (share / 100, grace, most) == (PYTEST_SHARE, GRACE_S, PYTEST_MOST_S)
    pytest_s = lambda b: min(PYTEST_MOST_S, PYTEST_SHARE * (b - GRACE_S))   # noqa: E731 (at the start: none used)
    assert int(pytest_s(budget)) == got and most_again == most
    assert pytest_s(from_budget) == most and pytest_s(from_budget - 1) < most


def test_the_input_encodings_and_the_sample_cameras_parameters_are_the_codes():
    """The encodings the Topics table's `image` row lists are the decoder's SUPPORTED_ENCODINGS (bayer_{a,b}{8,16}
    spelt out, 'yuv422 / uyvy (UYVY)' both names); the Sample camera section names each of sample_camera's
    parameters, its photographs and its encodings."""
    from dpt_ros.pipeline.encodings import SUPPORTED_ENCODINGS
    from dpt_ros.ros import sample_camera

    image_row = next(line for line in _section("### Topics", "Compressed copies").splitlines()
                     if line.startswith("| `image` |"))
    listed = image_row.split(" | ")[3].split(";")[0]
    listed = re.sub(r"bayer_\{([a-z,]+)\}\{([0-9,]+)\}", lambda m: ", ".join(
        f"bayer_{p}{b}" for p in m.group(1).split(",") for b in m.group(2).split(",")), listed)
    encodings = set()
    for item in re.split(r",\s*", listed):
        item = re.sub(r"\s*\(.*", "", item)   # "32FC1 (0..1)", "yuv422 / uyvy (UYVY)"
        encodings |= {e.strip() for e in item.split("/")}
    assert encodings == set(SUPPORTED_ENCODINGS), encodings ^ set(SUPPORTED_ENCODINGS)

    section = _section("### Sample camera", "## Model (`dpt_ros.model`)")
    named = set(re.findall(r"`(\w+)`", section))
    assert {p[0] for p in sample_camera.PARAMETERS} <= named, {p[0] for p in sample_camera.PARAMETERS} - named
    photographs = re.search(r"scikit-image photographs ([\w, ]+);", section).group(1)
    assert re.split(r",\s*", photographs) == list(sample_camera.BUILTIN_IMAGES), photographs
    assert f"`encoding` ({', '.join(sample_camera.ENCODINGS)})" in section.replace("\n", " ")


def test_the_linger_of_a_failed_start_the_readme_gives_is_the_nodes():
    """A failed start whose FATAL line has a /rosout reader holds the process for _ROSOUT_LINGER_S before it exits
    (_say_failure): the README's exit codes say how long."""
    from dpt_ros.ros.node import _ROSOUT_LINGER_S

    found = re.search(r"the process lingers ([\d.]+) s after the line before it takes the node down",
                      " ".join(README.read_text().split()))
    assert found, "README's exit codes no longer say how long a failed start lingers for its /rosout line"
    assert float(found.group(1)) == _ROSOUT_LINGER_S, found.group(0)


def test_the_interface_counts_in_the_reliability_table_are_the_policys():
    """The Security row of README's Reliability table counts the node's interfaces as the SROS2 policy tool lists
    them (what test_reliability_security checks against a running node): published topics (without the optional
    label_info), subscribed topics, services and parameters."""
    from dpt_ros.tools import sros2_policy

    found = re.search(r"exactly (\d+) published topics, (\d+) subscribed, (\d+) services, (\d+) parameters",
                      README.read_text())
    assert found, "README's Reliability table no longer counts the node's interfaces"
    want = sros2_policy.expected("/", [""], "raw", optional=False)
    assert tuple(map(int, found.groups())) == tuple(len(want[k]) for k in ("publish", "subscribe", "reply",
                                                                          "parameters"))


def test_every_parameter_the_readmes_commands_set_exists():
    """The parameters the README's commands set (`ros2 param set /dpt_node NAME ...`, `-p NAME:=...`) are
    dpt_node's (or, in sample_camera's commands, sample_camera's): a renamed parameter would leave a command that
    rclpy refuses live, or ignores at start-up (with only a warning)."""
    from dpt_ros.ros import params, sample_camera

    text = README.read_text()
    node = set(params.SPECS)
    camera = {p[0] for p in sample_camera.PARAMETERS}
    live = re.findall(r"ros2 param set /dpt_node ([\w.]+)", text)
    assert len(live) >= 8 and sorted(set(live) - node) == []
    start = [(command, name) for command in _commands(text) for name in re.findall(r"-p (\w[\w.]*):=", command)
             if name != "name"]   # (`-p name:=value`, the form)
    assert len(start) >= 8, start
    assert [(c, n) for c, n in start if n not in (camera if "sample_camera" in c else node)] == []


# ---------------------------------------------------------------- Troubleshooting: the node's words, quoted

#: messages the Troubleshooting section quotes from other programs than the node: Fast DDS's (its Docker row),
#: PyTorch's (the CUDA error the node's message follows)
_FOREIGN_QUOTES = {"Failed to create segment ...: No such file or directory", "Unable to Register SHM Transport",
                   "AcceleratorError: CUDA error: an illegal memory access was encountered"}
#: how a quote starts when it is a command to type, not a message
_COMMANDS = ("ros2 ", "docker ", "-r ", "nvidia-smi", "dmesg")
#: what stands for a value in a quote: '...' (text left out), N / T (a number), /ns/<name> (a topic), WxH / wxh
#: (an image size), <topic>, '(s)' (a plural), and any number (an example's)
_PLACEHOLDER = re.compile(r"\.\.\.|\(s\)|<[a-z_]+>|/ns/[\w/]+|\b(?:N|T|WxH|wxh)\b|\b\d+(?:\.\d+)?\b")
_HOLE = "\x00"


def _troubleshooting_quotes() -> tuple[list[str], list[str]]:
    """(messages, /diagnostics keys) that README's Troubleshooting section quotes in code spans, whitespace joined
    (a span may run over a line break). A message: a span with a space in it that sets no parameter (':=') and is no
    command to type and not another program's; a key: a span that names one of the node's count families
    (incomplete., error., waited_in_vain., dropped., latency.) or a rate (_hz), or a `key: value` pair."""
    section = _section("### Troubleshooting", "### Large images between processes")
    spans = list(dict.fromkeys(" ".join(s.split()) for s in re.findall(r"`([^`]+)`", section)))
    assert _FOREIGN_QUOTES <= set(spans), _FOREIGN_QUOTES - set(spans)   # (no stale entries)
    keys = [s for s in spans if re.fullmatch(r"(incomplete|error|waited_in_vain|dropped|latency)\.[\w<>]+|\w+_hz", s)]
    keys += [s for s in spans if re.fullmatch(r"[\w.]+: \S+", s)]
    messages = [s for s in spans if " " in s and ":=" not in s and not s.startswith(_COMMANDS)
                and s not in _FOREIGN_QUOTES and s not in keys]
    return messages, keys


def _message_templates() -> list[str]:
    """Every string constant and f-string of dpt_ros' modules but the docstrings (implicit concatenation already
    joined by the parser, whitespace runs made one space), an f-string's replacement fields as _HOLE: the texts the
    node can print."""
    templates = []
    for path in sorted((README.parent / "dpt_ros").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (
            ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body and isinstance(
            n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                templates.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                templates.append("".join(v.value if isinstance(v, ast.Constant) else _HOLE for v in node.values))
    return [" ".join(t.split()) for t in templates]


def _lettered(word: str) -> bool:
    return bool(re.search(r"[A-Za-z]", word))


def _producible(fragment: str, templates: list[list[str]]) -> bool:
    """Whether the node can print ``fragment`` (words of a quote between placeholders): it is a run of pieces, each
    words of one template (its words split at spaces), a word as the template has it or a value where the template
    has a replacement field (`model` in `worker stuck in model`: f"worker stuck in {stage}"; a value of up to two
    words: `depth (remapped)`; `publisher` for f"publisher{s}"), with at least one word as the template has it. A
    piece that another follows ends before a field, the value of which the next piece begins a template of (`no
    camera_info: none received on`: f"no camera_info: {why}; ..." and f"none received on {topic}: ..."), or at
    the template's end, the next piece a text added to it (`text += " (the frame's own ..."`)."""
    words = fragment.split()
    while words and not _lettered(words[0]):   # (what joins it to a placeholder: the ':' of '/ns/image: ...')
        words.pop(0)
    while words and not _lettered(words[-1]):
        words.pop()
    n = len(words)
    known = set(words)
    candidates = [t for t in templates if known.intersection(t)]

    def ends(token: str, text: str, p: int, m: int) -> tuple[str, str]:
        """(token, text) without the punctuation at the fragment's ends (`... on /out ...`: f"on {topic}: ...")."""
        if p + m == n:
            token, text = token.rstrip(",:;.)"), text.rstrip(",:;.)")
        if p == 0:
            token, text = token.lstrip("(:"), text.lstrip("(:")
        return token, text

    def same(token: str, p: int, m: int) -> bool:   # (words p..p+m-1 as the token has them, a field any value)
        token, text = ends(token, " ".join(words[p:p + m]), p, m)
        return re.fullmatch(".*".join(map(re.escape, token.split(_HOLE))), text, re.S) is not None

    def pieces(t: list[str], k: int, p: int, anchors: int, first: Optional[bool], last: bool = False):
        """Where words from the p-th on, read as t's from its k-th, end (in the words, in t), the words found as t
        has them (its own text: anchors), and whether its first and its last word is one."""
        if anchors:
            yield p, k, anchors, first, last
        if p == n or k == len(t):
            return
        if _HOLE not in t[k]:
            if same(t[k], p, 1):
                yield from pieces(t, k + 1, p + 1, anchors + 1, True if first is None else first, True)
            return
        own = len(re.sub(r"[^A-Za-z]", "", t[k].replace(_HOLE, ""))) >= 3   # (`publisher` of f"publisher{s}")
        for m in range(1, min(2, n - p) + 1):
            if same(t[k], p, m):
                yield from pieces(t, k + 1, p + m, anchors + own, own if first is None else first, own)

    @functools.cache
    def readable(i: int, follows: bool) -> bool:   # (words[i:] as pieces, after a piece that ended at a field)
        if i == n:
            return True
        for t in candidates:
            for s in ([0] if follows else range(len(t))):
                for j, k, anchors, first, last in pieces(t, s, i, 0, None):
                    # a value only inside a piece, or at the fragment's or the template's end (`published on
                    # /out ...`); the next piece: the value of a field here, or a text added after this one
                    if first and (last or j == n or k == len(t)) and (anchors >= 2 or i == 0 or j == n) and (
                            j == n or ((k == len(t) or t[k].startswith(_HOLE)) and readable(j, True))):
                        return True
        return False

    return readable(0, False)


def _count_reasons() -> set:
    """The reasons the node counts and logs a frame's failure under (`[calibration] ...`): the first arguments of
    its _count_error calls, the reasons _failure gives (a stage, or cuda_oom)."""
    from dpt_ros.ros.node import STAGES

    reasons = set(STAGES)
    for node in ast.walk(ast.parse(NODE_PY.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "_count_error" \
                and isinstance(node.args[0], ast.Constant):
            reasons.add(node.args[0].value)
        elif isinstance(node, ast.FunctionDef) and node.name == "_failure":
            reasons |= {r.value.elts[0].value for r in ast.walk(node) if isinstance(r, ast.Return)
                        and isinstance(r.value, ast.Tuple) and isinstance(r.value.elts[0], ast.Constant)}
    return reasons


def _status_keys() -> set:
    """The keys node.py sets by name in its /diagnostics statuses (`kv["cpu_threads"] = ...`, `ckv["camera_info"]`)."""
    return {node.slice.value for node in ast.walk(ast.parse(NODE_PY.read_text()))
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
            and node.value.id in ("kv", "ckv") and isinstance(node.slice, ast.Constant)}


def _unprintable(quote: str, templates: list[list[str]], reasons: set) -> list[str]:
    """The parts of ``quote`` the node cannot print: a `[reason]` it does not count, or a fragment (its text
    between placeholders, four characters or more) that is not a run of its templates' words (_producible)."""
    missing = []
    tag = re.match(r"\[(\w+)\] ", quote)
    if tag:
        quote = quote[tag.end():]
        if tag.group(1) not in reasons:
            missing.append(tag.group(0))
    key = re.match(r"([\w.]+): ", quote)   # (a status's key and value, `camera_info: none received on ...`)
    if key and key.group(1) in _status_keys():
        quote = quote[key.end():]
    return missing + [f for f in _PLACEHOLDER.split(quote) if len(f.strip(" :;,.()")) >= 4
                      and not _producible(f, templates)]


def test_the_troubleshooting_sections_quotes_are_what_the_node_prints():
    """Users grep their logs for the words README's Troubleshooting section quotes (`no camera_info: none received
    on /ns/camera_info: ...`, `worker stuck in model for N s`): each quoted message, split at its placeholders
    (..., N, T, /ns/..., WxH, <topic>, numbers), is text of the node's source, where a word may be a value the node
    fills in; a message reworded in the code and not in the README fails here."""
    messages, _ = _troubleshooting_quotes()
    assert len(messages) >= 25, messages
    templates, reasons = [t.split(" ") for t in _message_templates()], _count_reasons()
    assert {q: m for q in messages if (m := _unprintable(q, templates, reasons))} == {}


def _counted_keys() -> set:
    """The per-camera counts of node.py (`cam.counts[...] += 1`), as /diagnostics names them ('.' for ':'): the
    keys of a reason (`incomplete:` + reason) with each reason the node counts, other names (`dropped:` + name)
    as '<name>'."""
    reasons = _count_reasons()

    def values(expr) -> set:
        if isinstance(expr, ast.Constant):
            return {expr.value}
        if isinstance(expr, ast.IfExp):
            return values(expr.body) | values(expr.orelse)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return {a + b for a in values(expr.left) for b in values(expr.right)}
        if isinstance(expr, ast.Name):
            return reasons if expr.id == "reason" else {f"<{expr.id}>"}
        raise AssertionError(f"a count key the test cannot read: {ast.unparse(expr)}")

    keys = set()
    for node in ast.walk(ast.parse(NODE_PY.read_text())):
        if isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "counts":
            keys |= values(node.slice)
    return {k.replace(":", ".") for k in keys}


def test_the_troubleshooting_sections_diagnostics_keys_are_the_nodes(harness):
    """The /diagnostics keys the Troubleshooting section names are the node's: the ones every running node reports
    (`latency.model_ms`, `output_rate_hz`, `depth.random_weights: True`) in a node's own DiagnosticArray, the counts
    of what went wrong with a frame (`incomplete.no_camera_info`, `waited_in_vain.camera_info`, `dropped.<topic>`),
    which take a scenario each to appear, among the counts node.py keeps."""
    _, keys = _troubleshooting_quotes()
    assert len(keys) >= 10, keys
    node = harness.start_node()
    published = {}
    for status in node.diagnostics().status:
        published.update({v.key: v.value for v in status.values})
    assert {"latency.model_ms", "output_rate_hz", "input_rate_hz"} <= set(published)   # (the check is real)
    counted = _counted_keys()
    assert {"incomplete.no_camera_info", "waited_in_vain.camera_info", "dropped.<name>", "received"} <= counted
    unknown = []
    for quoted in keys:
        key, _, value = quoted.partition(": ")
        if value:
            if published.get(key) != value:
                unknown.append(quoted)
        elif key not in published and re.sub(r"<\w+>", "<name>", key) not in counted:
            unknown.append(quoted)
    assert unknown == []
