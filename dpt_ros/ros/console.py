"""The console scripts ``dpt_node``, ``dpt_lifecycle_node``, ``sample_camera`` and ``dpt_predict`` (setup.py's entry
points).

Importing the node module takes 1-3 s (torch, rclpy, OpenCV). A Ctrl-C, SIGTERM or SIGHUP (not ignored) in that
time ends the process as one does later, quietly with exit code 0, instead of with an import's traceback (``ros2
launch`` users press Ctrl-C right after starting often). Once the module is imported, :func:`dpt_ros.ros.node.run`
takes over (its main replaces these handlers with its own) and rclpy handles SIGINT and SIGTERM (the node's main,
SIGHUP). ``sample_camera`` and ``dpt_predict``
(torch, OpenCV, rclpy: 1-3 s too) likewise end quietly with the exit code each gives a Ctrl-C later: 0
(sample_camera), 130 and ``predict: interrupted`` (dpt_predict). Nothing here imports ROS: ``dpt_predict`` runs
without it."""
import ast
import contextlib
import importlib
import os
import re
import signal
import sys
from types import ModuleType
from typing import NoReturn


def _import(module: str, code: int = 0, said: str = "") -> ModuleType:
    """``module`` imported, or the process ended with ``code`` (and ``said`` on stderr) when a Ctrl-C or SIGTERM
    came meanwhile: its exception, or the ImportError ('initialization failed') it becomes when it lands while a C
    extension (rclpy's) initialises, with the signal's exception as its cause."""
    try:
        return importlib.import_module(module)
    except BaseException as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, (KeyboardInterrupt, SystemExit)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        if said:
            stderr_line(said)
        sys.exit(code)


def stderr_line(line: str) -> None:
    """``line`` on stderr; nothing where the process has none: started with it closed (``2>&-``), Python's
    ``sys.stderr`` is None, and ``print(line, file=None)`` wrote the line on stdout, which a user may read as data."""
    if sys.stderr is not None:
        print(line, file=sys.stderr)


def hold_closed_streams() -> None:
    """Where the process started with a standard stream closed (``2>&-``, ``1>&-``, ``<&-``): /dev/null opened on its
    descriptor, and Python's ``sys.stderr`` (``sys.stdout``, ``sys.stdin``), None then, a stream on it. Before, the
    next file opened took the descriptor (the ROS log file, which rclpy.init opens; an image predict writes), so what
    C code writes to stderr went into that file (rcutils' console logger wrote every log line into the log file a
    second time), and a line printed to ``sys.stderr`` (None) went onto stdout, which a user may read as data."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):   # (lowest first: the descriptor open() takes)
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        held = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if held != fd:   # (another thread opened a file in between, which has the descriptor now: leave it)
            os.close(held)
            continue
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False))


#: the exit status of a tool whose reader went away (``| head``): what a program killed by SIGPIPE gives, 128 + 13
EXIT_PIPE_CLOSED = 141


def to_devnull(stream) -> None:
    """``stream``'s descriptor pointed at /dev/null (after a write there failed): what it still holds in its buffer,
    and what is written later, go nowhere, so Python's flush of the standard streams at exit does not fail once more
    ("Exception ignored ... BrokenPipeError", exit status 120). Nothing for a stream without a descriptor."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()   # (what was buffered when the write failed: into /dev/null now)


def write_last(text: str, program: "str | None" = None) -> int:
    """Write ``text``, all a program prints (a tool's report, ``--help``, also the nodes'), to standard output, and
    give the exit status it ends with: 0; :data:`EXIT_PIPE_CLOSED`, quietly, where the reader has gone (``weights
    --urls | head -3``), as a program that SIGPIPE ends (Python ignores SIGPIPE: the write raised BrokenPipeError, and
    the interpreter's flush of stdout at exit raised it once more, two tracebacks); another error (a full disk,
    ``>/dev/full``) said on stderr, that the program ends: status 1 (a tool's :func:`tool_streams` report gives it
    to :func:`tool_exit`; here 0 then). ``program``: the name for that line where stdout is no tool's report (the
    nodes': ``dpt_node``)."""
    out = getattr(sys.stdout, "unwrapped", sys.stdout)
    if out is None:   # (started with stdout closed)
        return 0
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        to_devnull(out)   # (the interpreter flushes stdout at exit: to /dev/null now, not into the closed pipe)
        return EXIT_PIPE_CLOSED
    except OSError as e:
        report = sys.stdout if isinstance(sys.stdout, _Report) else None
        (report or _Report(out, program or _program_name())).failed(e, last=True)
        return 0 if report is not None else 1
    return 0


class _DroppingFailedWrites:
    """A tool's ``sys.stderr`` (:func:`tool_streams`): ``stream``, but a write or flush that fails (ENOSPC, EPIPE,
    EIO) drops its text instead of raising."""

    def __init__(self, stream) -> None:
        self._stream = stream

    @property
    def unwrapped(self):
        """The stream this one writes to."""
        return self._stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            self.failed(e)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self.failed(e)

    def failed(self, error: OSError, last: bool = False) -> None:
        """A write or flush raised ``error``: dropped. ``last``: the tool's last output, after which it ends."""

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _Report(_DroppingFailedWrites):
    """A tool's ``sys.stdout`` (:func:`tool_streams`), its report: where it cannot be written (a reader gone, ``|
    head -1``; a full disk, ``>/dev/full``) the tool goes on with its work (predict's images, calibrate_depth's file,
    a benchmark's runs), the rest of the report dropped, said once on stderr; :attr:`lost`, the first error, gives
    the exit status (:func:`tool_exit`)."""

    def __init__(self, stream, program: str) -> None:
        super().__init__(stream)
        self.lost: "OSError | None" = None
        self._program = program

    def failed(self, error: OSError, last: bool = False) -> None:
        """A write or flush raised ``error``: the first one said, the descriptor pointed at /dev/null. ``last``: the
        output the tool ends with (``--help``, ``weights --urls``: :func:`write_last`), where
        no work goes on after it, and the line says so."""
        if self.lost is not None:
            return
        self.lost = error
        to_devnull(self._stream)
        if isinstance(error, BrokenPipeError):
            why = f"its reader has gone ({error.strerror}; e.g. | head)"
            status = EXIT_PIPE_CLOSED
        else:
            why = error.strerror or str(error)
            status = 1
        if last:
            stderr_line(f"{self._program}: cannot write on standard output: {why}; what it printed there is "
                        f"incomplete, and it ends with exit status {status}")
            return
        stderr_line(f"{self._program}: cannot write on standard output: {why}; the rest of what it prints there is "
                    f"dropped, its work goes on (its other outputs are written; exit status {status} if nothing else "
                    f"fails)")


def _program_name() -> str:
    """The tool's name for :class:`_Report`'s line: ``predict`` for ``python -m dpt_ros.tools.predict``,
    ``dpt_predict`` for the console script."""
    name = os.path.splitext(os.path.basename(sys.argv[0] if sys.argv else ""))[0]
    return name if name and not name.startswith("-") else "python"


def tool_streams() -> None:
    """The standard streams of a command-line tool (dpt_predict, sample_camera, calibrate_depth, the demo, the
    weights helper, the benchmarks, gpu_check, sros2_policy), set as its process starts: a closed one held
    (:func:`hold_closed_streams`: what it writes to stderr goes nowhere, never onto stdout or into a file it opened),
    a stderr that cannot be written (a full disk, ``2>/dev/full``; a reader gone) dropping what it cannot write, and
    a stdout that cannot be written its report dropped from there on (:class:`_Report`), the work going on. Before,
    the tool's first line there (predict's random-weights banner, a refusal; on stdout, predict's line of an image
    after ``| head -1`` had read the first) raised OSError: it ended with exit status 1 and a traceback that could
    not be written either, before it had done its work (the images after the first), or in place of the status it
    gives the failure. (The node says a line it could not write on stderr in its log: :func:`dpt_ros.ros.node.run`.)
    The tool ends with :func:`tool_exit`."""
    hold_closed_streams()
    if sys.stderr is not None and not isinstance(sys.stderr, _DroppingFailedWrites):
        sys.stderr = _DroppingFailedWrites(sys.stderr)
    if sys.stdout is not None and not isinstance(sys.stdout, _DroppingFailedWrites):
        sys.stdout = _Report(sys.stdout, _program_name())


def tool_exit(code: "int | None") -> NoReturn:
    """``sys.exit(code)`` for a tool that :func:`tool_streams` set up: its report flushed first (a failure said now,
    not at the interpreter's exit), and where its stdout could not be written and the work succeeded (``code`` 0),
    exit status :data:`EXIT_PIPE_CLOSED` for a reader gone (``| head``: as a program SIGPIPE ends, as ``weights
    --urls``) or 1 for another error (a full disk: the report the user kept is incomplete); a failure's own status
    (1, 2, 130) stays, saying more of the work."""
    report = sys.stdout
    if isinstance(report, _Report):
        report.flush()
        if not code and report.lost is not None:
            code = EXIT_PIPE_CLOSED if isinstance(report.lost, BrokenPipeError) else 1
    sys.exit(code)


def ros_init_failure(program: str, error: BaseException) -> str:
    """The line that says why ``rclpy.init`` refused the command line's ROS arguments. For a malformed rule rcl
    logs its own error and rclpy's exception says which rule; for an argument after --ros-args that ROS does not
    know, rcl says nothing and rclpy's UnknownROSArgsError holds only their list (``['--bogus']``)."""
    if type(error).__name__ != "UnknownROSArgsError":
        # rcl says of a params file that is not there only "Error opening YAML file, at .../parser.c:271"
        # (the path ends at "'. Error": a folder's name may hold a quote of its own)
        missing = re.search(r"Couldn't parse params file: '--params-file (.+?)'\. Error", str(error), re.DOTALL)
        if missing and not os.path.isfile(missing.group(1)):
            path = missing.group(1)
            return (f"{program}: cannot initialise ROS 2: parameters file {path!r}: "
                    + ("it is a directory, not a file" if os.path.isdir(path) else
                       f"no such file (a relative path is from the current directory, {os.getcwd()})")
                    + f" [rcl: {error}]")
        return f"{program}: cannot initialise ROS 2: {error}" + _rule_form(str(error))
    try:
        unknown = [str(a) for a in ast.literal_eval(str(error))]
    except (ValueError, SyntaxError, TypeError):
        unknown = [str(error)]
    return (f"{program}: cannot initialise ROS 2: unknown ROS argument(s) {' '.join(map(repr, unknown))} after "
            f"--ros-args; ROS arguments are -p NAME:=VALUE, -r FROM:=TO, --params-file FILE, --enclave NAME, "
            f"--log-level LEVEL, ... ({program} --help: an example)")


def _rule_form(error: str) -> str:
    """How to write the rule rcl could not parse (its error says only that it could not: "Expected lexeme type (22)
    not found", or "error not set" for ``-p name:=`` without a value), or ''."""
    if re.search(r"Couldn't parse (parameter override rule|trailing (-p|--param) flag)", error):
        return ("; write a parameter as -p NAME:=VALUE, both sides in one argument, e.g. -p depth.weights:=random "
                "(an empty string: -p \"NAME:=''\")")
    if re.search(r"Couldn't parse (remap rule|trailing (-r|--remap) flag)", error):
        return "; write a remap as -r FROM:=TO, both sides in one argument, e.g. -r image:=/camera/image_raw"
    return ""


def init_ros(program: str, args: "list[str] | None") -> "int | None":
    """``rclpy.init(args=args)`` for ``program`` (dpt_node, dpt_lifecycle_node, sample_camera): None once it is done,
    or exit status 2 with one line on stderr saying why not: a ROS_DOMAIN_ID past Fast DDS's ports (rclpy.init takes
    it, and the process's first node ended it with exit status 1 and Fast DDS's words), or what rclpy.init refused
    (malformed --ros-args, SROS2 Enforce without the enclave's keys, ...: :func:`ros_init_failure`). A /dev/shm too
    small for the DDS profile is looked at before rclpy.init, whose DDS participant takes this process's segment,
    and logged as a warning after it. Imports rclpy (when called: this module imports no ROS)."""
    import rclpy

    from dpt_ros.ros.dds_env import env_domain_problem, shm_shortage

    why = env_domain_problem()
    if why:
        stderr_line(f"{program}: {why}")
        return 2
    shm_warning = shm_shortage()
    try:
        rclpy.init(args=args)
    except Exception as e:  # noqa: BLE001 - malformed --ros-args, SROS2 Enforce without the enclave's keys, ...
        stderr_line(ros_init_failure(program, e))
        return 2
    if shm_warning:
        rclpy.logging.get_logger(program).warning(shm_warning)
    return None


def shut_down_under(error: BaseException, context=None) -> bool:
    """Whether ``error`` is a stop (Ctrl-C, SIGTERM, an external shutdown) and no failure: a RuntimeError with
    ``context`` (rclpy's default context where None) shut down. rclpy's signal handler shuts the context down under
    calls in flight, which then raise RCLError ("the given context is not valid" from an executor's wait set made
    just after its check, "publisher's context is invalid" from a publish) or InvalidHandle, both RuntimeErrors,
    instead of ExternalShutdownException. Imports rclpy (when called)."""
    import rclpy

    return isinstance(error, RuntimeError) and not (rclpy.ok() if context is None else context.ok())


def _quiet_handlers() -> None:
    """SIGTERM, and SIGHUP (the terminal closed) unless ignored (nohup), end the process with exit code 0."""
    signal.signal(signal.SIGTERM, _terminated)
    hang_up = signal.getsignal(signal.SIGHUP) if hasattr(signal, "SIGHUP") else None
    if hang_up not in (None, signal.SIG_IGN):
        signal.signal(signal.SIGHUP, _terminated)


def _start(entry: str) -> None:
    _quiet_handlers()
    node = _import("dpt_ros.ros.node")
    # the handlers stay until the node's main replaces them with its own (before, set back to the defaults here: a
    # SIGTERM or SIGHUP in between killed the process, exit status -15 or -1); main takes over from the ones it finds
    try:
        getattr(node, entry)()
    except KeyboardInterrupt:   # a Ctrl-C before main took over (was: its traceback, killed by SIGINT)
        sys.exit(0)


def _terminated(signum, frame) -> None:
    sys.exit(0)


def dpt_node() -> None:
    _start("run")


def dpt_lifecycle_node() -> None:
    _start("run_managed")


def sample_camera() -> None:
    tool_streams()
    _quiet_handlers()
    camera = _import("dpt_ros.ros.sample_camera")
    # the handlers stay (before, SIGTERM set back to its default here: one before main's rclpy.init installed rclpy's
    # killed the process, exit status -15; a SIGHUP, never handled, -1): rclpy's SIGTERM handler shuts the context
    # down, then calls this one, and main's finally destroys the node; a SIGHUP ends it the same way
    try:
        tool_exit(camera.main())
    except KeyboardInterrupt:   # a Ctrl-C before main's try (was: its traceback, killed by SIGINT)
        sys.exit(0)


def dpt_predict() -> None:
    tool_streams()
    predict = _import("dpt_ros.tools.predict", 130, "predict: interrupted")
    tool_exit(predict.main())
