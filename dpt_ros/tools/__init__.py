"""Command-line tools: demo, benchmarks, GPU check, weights helper."""

import contextlib
import errno
import hashlib
import os
import re
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Union


def run_benchmark(name: str, main: Callable[[], Optional[int]]) -> None:
    """``sys.exit(main())`` for benchmark ``name`` run from the command line: a Ctrl-C (SIGINT) before it has results
    to report (a tool that has some reports them itself) ends it with one line and exit status 130, as the demo,
    predict and calibrate_depth end, instead of a KeyboardInterrupt traceback; the tool's own clean-up (its node and
    camera processes stopped, in its ``finally``) has run by then. (Now and then CPython still ends the process by
    SIGINT after the line, having marked the interrupt unhandled on its way: a shell says 130 for that too.)"""
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted (Ctrl-C) before the run finished", file=sys.stderr)
        code = 130
    tool_exit(code)


def _matmul_precision(torch) -> "str | None":
    """``torch.get_float32_matmul_precision()``, or None where torch will not say (it refuses once the legacy
    ``allow_tf32`` flags and the precision API have both set it)."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return None


@contextlib.contextmanager
def settings_restored(threads: bool = False, opencv: bool = False, cuda_math: bool = False, umask: bool = False,
                      environ: bool = False, signals: tuple[int, ...] = ()) -> Iterator[None]:
    """Within the block a tool may change settings of the whole process, those it names; when the block ends, also
    by an exception or a Ctrl-C, each is set back to what it was, so that a tool's ``main()`` called in-process (from
    another tool, gpu_check, a test) leaves its caller's as they were: ``threads``, PyTorch's CPU thread count
    (``torch.set_num_threads``, a tool's ``--threads``); ``opencv``, OpenCV's (``cv2.setNumThreads``); ``cuda_math``,
    ``torch.backends``' TF32 and cuDNN autotuning flags (``cuda.matmul.allow_tf32``, ``cudnn.allow_tf32``,
    ``cudnn.benchmark``) and ``torch.set_float32_matmul_precision``'s setting; ``umask``, the process's file mode mask; ``environ``, ``os.environ`` (variables added are
    removed, those changed or removed set back); ``signals``, the Python handlers of those signals (one installed
    outside Python, which ``signal.getsignal`` cannot give, is left as the block left it)."""
    if threads or cuda_math:
        import torch   # (imported where used: the package imports without torch)
    if opencv:
        import cv2

    threads_before = torch.get_num_threads() if threads else None
    opencv_before = cv2.getNumThreads() if opencv else None
    cuda_before = ((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                    torch.backends.cudnn.benchmark) if cuda_math else None)
    precision_before = _matmul_precision(torch) if cuda_math else None
    umask_before = os.umask(0o022) if umask else None
    if umask_before is not None:
        os.umask(umask_before)
    environ_before = dict(os.environ) if environ else None
    handlers_before = {sig: signal.getsignal(sig) for sig in signals}
    try:
        yield
    finally:
        if threads_before is not None and torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
        if opencv_before is not None and cv2.getNumThreads() != opencv_before:
            cv2.setNumThreads(opencv_before)
        if cuda_before is not None:   # (each set only where changed: torch refuses to read a mix of its old and
            # new TF32 settings, float32_matmul_precision, where one was set after the other)
            matmul, cudnn, benchmark = cuda_before
            # (first the precision the caller set, "medium" included, which allow_tf32 True cannot tell from "high")
            if precision_before is not None and _matmul_precision(torch) != precision_before:
                torch.set_float32_matmul_precision(precision_before)
            if torch.backends.cuda.matmul.allow_tf32 != matmul:
                torch.backends.cuda.matmul.allow_tf32 = matmul
            if torch.backends.cudnn.allow_tf32 != cudnn:
                torch.backends.cudnn.allow_tf32 = cudnn
            if torch.backends.cudnn.benchmark != benchmark:
                torch.backends.cudnn.benchmark = benchmark
        if umask_before is not None:
            os.umask(umask_before)
        if environ_before is not None:
            for key in set(os.environ) - set(environ_before):
                del os.environ[key]
            for key, value in environ_before.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value
        for sig, handler in handlers_before.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


def threads_restored(opencv: bool = False) -> contextlib.AbstractContextManager[None]:
    """:func:`settings_restored` of PyTorch's CPU thread count, and with ``opencv`` OpenCV's too: a tool's
    ``--threads`` for its run only."""
    return settings_restored(threads=True, opencv=opencv)


#: file systems the kernel makes up (no disk behind them), where a user's folder or file cannot be made, or where
#: making one changes the system (a folder in a cgroup file system is a new control group; root may make one in /dev)
_VIRTUAL_FILE_SYSTEMS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
                                   "bpf", "configfs", "fusectl", "efivarfs", "devpts", "mqueue", "binfmt_misc", "nsfs",
                                   "selinuxfs", "devtmpfs"})


#: the kernel's folders, whatever file system is mounted there (a container's /dev is a tmpfs): what they hold
_KERNEL_FOLDERS = {"/proc": "processes", "/sys": "devices and drivers", "/dev": "device files"}
#: folders under those that are the user's: /dev/shm is a tmpfs anyone may write in (fast scratch space; the DDS
#: segments there are files of their own, which an output folder does not touch)
_USERS_IN_KERNEL_FOLDERS = (Path("/dev/shm"),)


def refuse_kernel_folder(out: Path) -> None:
    """Before ``out`` (a tool's output folder) is made or written in: raise where it is the kernel's
    (:func:`kernel_folder`), so that nothing is made there; :func:`output_folder_error` says why. As root,
    ``mkdir -p /sys/fs/cgroup/x`` made a folder (/sys/fs/cgroup a tmpfs here) and ``/sys/fs/cgroup/memory/x`` a new
    control group, and only the writes after it failed (if any did).

    :raises PermissionError: ``out`` is the kernel's (EPERM, its path as the file name)."""
    if kernel_folder(out) is not None:
        raise PermissionError(errno.EPERM, "the kernel's folder", str(out))


def kernel_folder(out: Path) -> Optional[str]:
    """Why ``out`` (its links followed) is the kernel's, where no folder or file of the user's belongs, else None: a
    folder on its way in one of the kernel's virtual file systems (:data:`_VIRTUAL_FILE_SYSTEMS`, wherever mounted:
    a cgroup mount; a tmpfs mounted under /sys, /sys/fs/cgroup, is under sysfs all the same), or under /proc, /sys or
    /dev whatever is mounted there (/dev/shm, the user's tmpfs, excepted)."""
    real = Path(os.path.realpath(out))
    if any(real == u or u in real.parents for u in _USERS_IN_KERNEL_FOLDERS):
        return None
    for p in (real, *real.parents):
        if os.path.isdir(p):
            fs_type, mount = _file_system(p)
            if fs_type in _VIRTUAL_FILE_SYSTEMS:
                return f"{p} is in the kernel's virtual {fs_type} file system (mounted at {mount})"
    top = next((t for t in _KERNEL_FOLDERS if real == Path(t) or Path(t) in real.parents), None)
    return None if top is None else f"{top} is the kernel's folder of {_KERNEL_FOLDERS[top]}"


def output_folder_error(out: Path, e: OSError, file: bool = False, option: str = "--out") -> str:
    """Why ``--out`` ``out`` could not be made or used (``e``: what making or writing it raised), said so that a user
    knows what to change: a path that names a file (or lies under one) is said to be a file, where ``mkdir`` says only
    'File exists' / 'Not a directory'; a path that is the kernel's (:func:`kernel_folder`: /proc, /sys, /dev, a cgroup
    mount, where mkdir says 'No such file or directory' of a folder that is there, or :func:`refuse_kernel_folder`
    refused it) or on a read-only file system is said to be there, a full one (ENOSPC, EDQUOT) and a file too large
    (EFBIG: the process's file size limit, ``ulimit -f``, or the file system's largest file) with what to do, a name
    or path too long with its length and the limit (:func:`path_too_long`), and a
    folder without the permission to write in it is named with its owner and mode; else the system's reason. ``file``: ``out`` names a file to write
    (sros2_policy's --out, which refuses a folder itself), not a folder: a file there is what it writes, not said to
    be in the way, and one it may not write is named with its owner and mode. ``option``: how the user gave ``out``
    (``OUT`` for gpu_check's environment variable)."""
    for p in (out, *out.parents):
        # (os.path's tests: False where the path cannot be looked at, a name too long or a folder without search
        # permission, which Path.exists raises, so that mkdir's own reason is said below)
        if os.path.exists(p) and not os.path.isdir(p):
            if p == out and file:   # (the file it was to write: why it could not is said below)
                continue
            if p == out:
                return (f"{out} is a file, not a folder; give {option} a folder (a new name, or an existing folder), "
                        "or move the file away")
            return f"{p} is a file, so no folder can be made under it; give {option} a path that is not under a file"
    elsewhere = f"give {option} a path elsewhere, e.g. under your home folder ({Path.home()})"
    kernels = kernel_folder(out.parent if file else out)   # (a file's own link, e.g. to /dev/full, not followed)
    if kernels is not None:
        return f"{kernels}, where no folder or file of yours belongs; {elsewhere}"
    too_long = path_too_long(str(out), option) if e.errno == errno.ENAMETOOLONG else ""
    if too_long:   # (the system says only 'File name too long')
        return too_long
    # the deepest folder of the path that is there: where the folder (or file) was to be made
    there = next((p for p in (out, *out.parents) if os.path.isdir(p)), None)
    if there is not None:
        fs_type, mount = _file_system(there)
        on = f"{fs_type} mounted at {mount}" if fs_type else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            full = "your disk quota on the file system of" if e.errno == errno.EDQUOT else "the file system of"
            used = "is used up" if e.errno == errno.EDQUOT else "is full"
            return (f"{full} {there} {used} ({e.strerror}{'; ' + on if on else ''}): free some space on it, or give "
                    f"{option} a path on another file system")
        if e.errno == errno.EFBIG:   # (the process's RLIMIT_FSIZE, else the file system's largest file)
            limit = _file_size_limit()
            if limit is not None:
                return (f"the file is larger than this process's file size limit, {limit} bytes ({e.strerror}; "
                        f"ulimit -f {limit // 1024} in the shell that started it): raise it (ulimit -f unlimited)")
            return (f"the file is larger than the file system of {there} takes ({e.strerror}"
                    f"{'; ' + on if on else ''}): give {option} a path on another file system")
        try:
            read_only = e.errno == errno.EROFS or bool(os.statvfs(there).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if read_only:
            on = f" ({fs_type} mounted read-only at {mount})" if fs_type else ""
            return f"{there} is on a read-only file system{on}: nothing can be written there; {elsewhere}"
        if e.errno in (errno.EACCES, errno.EPERM) and file and os.path.exists(out):
            return f"no permission to write {out} ({_owner_and_mode(out)}; this tool runs as {_user()}); {elsewhere}"
        if e.errno in (errno.EACCES, errno.EPERM):
            return (f"no permission to write in {there} ({_owner_and_mode(there)}; this tool runs as {_user()}); "
                    f"{elsewhere}")
        if e.errno == errno.ENOENT and there != out:
            # (the folder is there, yet the file system says what is to be made in it is not)
            return (f"the {fs_type or 'file'} file system of {there} does not let a folder be made in it "
                    f"({e.strerror}); {elsewhere}")
    return str(e.strerror or e)


def _file_size_limit() -> Optional[int]:
    """The largest file this process may write, in bytes (RLIMIT_FSIZE's soft limit, ``ulimit -f``), None where it
    has none (or it cannot be told)."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if limit == resource.RLIM_INFINITY else limit


def _file_system(path: Path) -> tuple[Optional[str], Optional[str]]:
    """(type, mount point) of the file system ``path`` is on, as /proc/self/mountinfo says (Linux); (None, None)
    where that cannot be told."""
    try:
        dev = os.stat(path).st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    real = os.path.realpath(path)
    found: tuple[Optional[str], Optional[str]] = (None, None)
    for line in lines:
        # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": the mount point 5th (octal escapes:
        # \040 a space), the type after the "-"
        fields, _, rest = line.partition(" - ")
        fields, rest = fields.split(), rest.split()
        if len(fields) < 5 or not rest or fields[2] != f"{os.major(dev)}:{os.minor(dev)}":
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and (found[1] is None or len(mount) > len(found[1])):
            found = (rest[0], mount)
        elif found[0] is None:
            found = (rest[0], None)
    return found


def _owner_and_mode(path: Path) -> str:
    """``path``'s owner and permission bits, as ``ls -ld`` writes them (``owner root, drwxr-xr-x``)."""
    try:
        st = os.stat(path)
    except OSError:
        return "owner unknown"
    return f"owner {_user(st.st_uid)}, {stat.filemode(st.st_mode)}"


def _user(uid: Optional[int] = None) -> str:
    """The name of user ``uid`` (by default the process's effective user), else its number."""
    uid = os.geteuid() if uid is None else uid
    try:
        import pwd  # noqa: PLC0415 - POSIX only

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


#: the longest file name, in bytes, where a file system does not say its own (Linux's NAME_MAX)
DEFAULT_NAME_MAX = 255


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that the file system of ``folder`` takes (:data:`DEFAULT_NAME_MAX` where it
    does not say)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX
    return limit if limit > 0 else DEFAULT_NAME_MAX


def name_too_long(folder: Path, file_name: str) -> str:
    """Why ``file_name`` cannot be a file in ``folder`` for its length ('' when it fits :func:`name_max`): the system's
    words, the name's length in bytes and the limit, for a writer to refuse it with before it writes anything (its
    temporary's name, :func:`temporary_name`, would fit)."""
    length, limit = len(os.fsencode(file_name)), name_max(folder)
    if length <= limit:
        return ""
    return (f"{os.strerror(errno.ENAMETOOLONG)} ({length} bytes; the file system of {folder} takes names of {limit} "
            f"bytes at most)")


#: the longest path the system takes, in bytes with its closing NUL, where it does not say its own (Linux's PATH_MAX)
DEFAULT_PATH_MAX = 4096


def path_too_long(path: str, option: str = "") -> str:
    """Why ``path`` (a file or folder a tool is to make or write, as given: relative to the working folder, or not)
    cannot be for its length ('' when it fits), and what to do: a name in it longer than the file system takes
    (:func:`name_too_long`, the file system of the deepest folder of it that is there), or the whole path, in bytes,
    not shorter than the system's PATH_MAX (the system's bare 'File name too long' says neither which nor the limit).
    ``option``: how the user gave it (``--yaml``), in what to give instead."""
    there = Path(path).anchor or "."
    for part in Path(path).relative_to(Path(path).anchor).parts:
        why = name_too_long(Path(there), part)
        if why:
            return f"{why}: give {option + ' ' if option else ''}a shorter name"
        if os.path.isdir(os.path.join(there, part)):
            there = os.path.join(there, part)
    try:
        limit = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = DEFAULT_PATH_MAX
    limit = limit if limit > 0 else DEFAULT_PATH_MAX
    length = len(os.fsencode(path))
    if length < limit:
        return ""
    return (f"{os.strerror(errno.ENAMETOOLONG)} (the path is {length} bytes; the system takes paths shorter than "
            f"{limit} bytes): give {option + ' ' if option else ''}a shorter path (e.g. relative to a folder nearer "
            "it, cd there first)")


def shortened_tail(file_name: str) -> str:
    """What a shortened temporary of ``file_name`` ends with before its ``suffix``: ``~``, 16 hex digits of the name's
    SHA-256, and its extension."""
    return f"~{hashlib.sha256(os.fsencode(file_name)).hexdigest()[:16]}{os.path.splitext(file_name)[1]}"


def temporary_name(prefix: str, file_name: str, suffix: str = "", limit: int = DEFAULT_NAME_MAX) -> str:
    """The name a file ``file_name`` is written under before it is renamed into place: ``<prefix><file_name><suffix>``
    (a tool's own marks: a pid, so that two runs never share one), or where that is longer than ``limit`` bytes (a
    name the file system takes, its temporary's not) ``<prefix><head>~<digest><extension><suffix>``: as much of the
    name as fits (whole characters: a UTF-8 one is never cut in two), 16 hex digits of its SHA-256 (names that share
    their head stay apart) and its extension (which a writer may go by: OpenCV does). :func:`is_temporary` tells
    either form of a name's temporary."""
    whole = f"{prefix}{file_name}{suffix}"
    if len(os.fsencode(whole)) <= limit:
        return whole
    stem, tail = os.path.splitext(file_name)[0], shortened_tail(file_name)
    room = limit - len(os.fsencode(f"{prefix}{tail}{suffix}"))
    while stem and len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return f"{prefix}{stem}{tail}{suffix}"


#: what a temporary written whole and renamed over its file ends with, after the file's name (:func:`temporary_name`):
#: any pid's, a regular expression for :func:`is_temporary` (``weights --convert``'s, :func:`write_whole`'s)
PARTIAL_SUFFIX_PATTERN = r"\.partial-\d+\.tmp"


def partial_suffix() -> str:
    """This process's :data:`PARTIAL_SUFFIX_PATTERN`: ``.partial-<pid>.tmp`` (the pid: two runs never share one)."""
    return f".partial-{os.getpid()}.tmp"


def write_whole(path, text: Union[str, bytes]) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a temporary beside it (``.<name>.partial-<pid>.tmp``,
    :func:`temporary_name`: shortened to the file system's name limit; a pid, so that two runs never share one),
    flushed to disk and renamed over ``path``; a write that fails (a full disk or quota, a file size limit, a Ctrl-C)
    leaves an earlier file of that name as it was, where ``open(path, "w")`` had emptied it first. A new file gets the
    mode ``open`` gives it (0666 less the umask), a file written over keeps its mode (and, where this process may
    give it, its owner and group); one ``open`` may not write is not written (PermissionError, as ``open`` raises). A
    link is written through, as ``open`` writes: its target is replaced, the link kept. Written in place as ``open``
    writes: what is there and not a regular file (a device, ``/dev/full``, or a pipe, ``/dev/stdout``), which cannot
    be replaced, and a file this process may write in a folder it may not write in (no temporary can be made there).
    The temporary is locked while it is written (:func:`create_locked`); one a writer killed outright left (SIGKILL, a
    power cut: its lock gone with it) is removed by the next write of the file, which names it in a line on stderr
    (:func:`_said_removed`), never one a running writer holds. ``text`` may be bytes (a PNG's, an ``.npy`` file's),
    written as they are.

    :raises OSError: as ``open`` and ``write`` raise it (its ``filename`` ``path``), the temporary removed."""
    try:
        st: Optional[os.stat_result] = os.stat(path)
        if stat.S_ISREG(st.st_mode):   # (one open may not write: refused as open refuses it, not renamed over)
            os.close(os.open(path, os.O_WRONLY))
    except FileNotFoundError:   # (a new file, or a link to one)
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        _write_in_place(path, text)   # (a folder: said by the rename below, "Is a directory")
        return
    target = Path(os.path.realpath(path))
    tmp = target.parent / temporary_name(".", target.name, partial_suffix(), name_max(target.parent))
    remove_unheld(target.parent, lambda name: is_temporary(name, target.name, r"\.", PARTIAL_SUFFIX_PATTERN),
                  said=lambda stale: _said_removed(stale, path))
    try:
        fd = create_locked(tmp)   # (held until the rename: a write of the file starting meanwhile leaves it alone)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM) and st is not None and stat.S_ISREG(st.st_mode):
            _write_in_place(path, text)   # (a file of its own in a folder that is not: written as before)
            return
        if e.errno is None:
            raise
        raise _named(e, path) from e
    try:
        with open(fd, "wb" if isinstance(text, bytes) else "w") as f:
            if st is not None and stat.S_ISREG(st.st_mode):
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    try:   # (root writing over a user's file: still the user's)
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except OSError:
                        pass
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            f.write(text)
            f.flush()
            os.fsync(fd)
            os.replace(tmp, target)   # (before the descriptor, and so the lock, is closed)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno is not None:
            raise _named(e, path) from e
        raise


def _said_removed(stale: Path, path) -> None:
    """One line on stderr: :func:`write_whole` removed ``stale``, the temporary of ``path`` that an earlier write killed
    outright left (it was removed without a word: a user who saw the file there was not told where it went)."""
    from dpt_ros.ros.console import _program_name, stderr_line   # (no ROS imports)

    stderr_line(f"{_program_name()}: removed {stale}, a temporary that an earlier write of {path} left when it was "
                f"killed before it finished (SIGKILL, a power cut); {path} is written anew")


def _write_in_place(path, text: Union[str, bytes]) -> None:
    """``text`` written to ``path`` as ``open(path, "w")`` (bytes: ``"wb"``) writes it (:func:`write_whole` where it
    cannot rename)."""
    try:
        with open(path, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
    except OSError as e:   # (write's and close's errors name no file: a full device, /dev/full, said of ``path``)
        if e.filename is None and e.errno is not None:
            raise _named(e, path) from e
        raise


def _named(e: OSError, path) -> OSError:
    """``e`` (raised of :func:`write_whole`'s temporary) of the file the caller asked for: what it says names that."""
    return OSError(e.errno, e.strerror, str(path))   # (of ``e``'s subclass: FileNotFoundError, PermissionError, ...)


def is_temporary(name: str, file_name: str, prefix: str, suffix: str) -> bool:
    """Whether ``name`` is a :func:`temporary_name` of ``file_name``, whole or shortened, whose prefix and suffix
    match the regular expressions ``prefix`` and ``suffix`` (``r"\\.partial-\\d+\\.tmp"``: any pid's): what a writer's
    stale-temporary clean-up removes for one destination."""
    m = re.fullmatch(f"(?:{prefix})(?:{re.escape(file_name)}|(?P<head>.*?){re.escape(shortened_tail(file_name))})"
                     f"(?:{suffix})", name, re.DOTALL)
    return m is not None and os.path.splitext(file_name)[0].startswith(m["head"] or "")


#: what flock raises where the file system has no locks (an NFS mount without its lock daemon): the temporaries are
#: written without one there, and none is removed (:func:`remove_unheld` cannot tell a running tool's)
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def create_locked(path: Path) -> int:
    """Create ``path`` (empty, mode 0666 less the umask) and take an exclusive ``flock`` on it, held until the
    descriptor returned is closed (the process's end, SIGKILL included, closes it): the sign to :func:`remove_unheld`
    that a running tool is writing it. A writer may open the same file again by name; the lock stays with it. A
    cleaner that took the lock between the file's creation and this lock removed it: made again then. Emptied only
    once locked: a tool of the same pid in another pid namespace (a container's pid 1), its temporary of the same name
    still being written, waits for that one's rename rather than truncating the file under it. On a file system
    without locks (:data:`_NO_LOCKS`) the file is made unlocked, as before locks were taken. A link of that name is
    not written through (ELOOP): a temporary is a file of its own."""
    import fcntl   # POSIX only (as dds_env.domain_lock): imported where used, so the package imports anywhere

    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:
                if e.errno not in _NO_LOCKS:
                    raise
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.ftruncate(fd, 0)   # (a stale one of a killed run of that pid)
                return fd
        except FileNotFoundError:   # removed by a cleaner before this lock: another try
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def remove_unheld(folder: Path, ours: Callable[[str], bool], unlocked_kind: Callable[[str], bool] = lambda name: False,
                  unlocked_age_s: float = 3600.0, said: Optional[Callable[[Path], None]] = None) -> tuple[int, int]:
    """Remove the temporaries in ``folder`` whose names ``ours`` takes that no running tool is writing: those no
    process holds a lock on (:func:`create_locked`; left by a run killed outright, SIGKILL or a power cut), those whose
    names ``unlocked_kind`` takes (an earlier version's, which locked nothing) only once older than ``unlocked_age_s``;
    ``said`` is called with each one removed (:func:`write_whole` names it on stderr). Returns ``(removed, kept)``,
    kept being those a running tool holds (or too young to tell) and those it could not remove."""
    import fcntl

    removed = kept = 0
    try:
        names = sorted(os.listdir(folder))
    except OSError:   # (a folder it cannot list: the writes themselves say what is wrong)
        return 0, 0
    for name in filter(ours, names):
        path = folder / name
        try:
            try:   # (for writing: over NFS flock is a byte-range lock, which an exclusive one needs a writer for)
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except PermissionError:   # (another user's: its lock can be tested all the same, except over NFS)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:   # gone meanwhile (renamed into place), a link, or not readable: not this run's to judge
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:   # a running tool is writing it
                kept += 1
                continue
            except OSError as e:   # (no locks on this file system, or over NFS not with this descriptor: a running
                # tool's cannot be told from a stale one)
                if e.errno not in _NO_LOCKS and e.errno != errno.EBADF:
                    raise
                kept += 1
                continue
            st = os.fstat(fd)
            if unlocked_kind(name) and time.time() - st.st_mtime < unlocked_age_s:
                kept += 1   # perhaps still being written by a tool that takes no lock
                continue
            try:
                if os.path.samestat(st, os.stat(path)):   # (still the file locked: not one renamed over it meanwhile)
                    os.unlink(path)
                    removed += 1
                    if said is not None:
                        said(path)
            except FileNotFoundError:
                pass
            except OSError:   # (another user's folder: said as kept)
                kept += 1
        finally:
            os.close(fd)
    return removed, kept
