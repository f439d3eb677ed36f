"""Command-line tools: demo, benchmarks, GPU check, weights helper."""

import errno
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional


def run_benchmark(name: str, main: Callable[[], Optional[int]]) -> None:
    """``sys.exit(main())`` for benchmark ``name`` run from the command line: a Ctrl-C (SIGINT) before it has results
    to report (a tool that has some reports them itself) ends it with one line and exit status 130, as the demo,
    predict and calibrate_depth end, instead of a KeyboardInterrupt traceback; the tool's own clean-up (its node and
    camera processes stopped, in its ``finally``) has run by then. (Now and then CPython still ends the process by
    SIGINT after the line, having marked the interrupt unhandled on its way: a shell says 130 for that too.)"""
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted (Ctrl-C) before the run finished", file=sys.stderr)
        code = 130
    sys.exit(code)


def output_folder_error(out: Path, e: OSError) -> str:
    """Why ``--out`` ``out`` could not be made or used, said so that a user knows what to change: a path that
    names a file (or lies under one) is said to be a file, where ``mkdir`` says only 'File exists' / 'Not a
    directory'."""
    for p in (out, *out.parents):
        # (os.path's tests: False where the path cannot be looked at, a name too long or a folder without search
        # permission, which Path.exists raises, so that mkdir's own reason is said below)
        if os.path.exists(p) and not os.path.isdir(p):
            if p == out:
                return (f"{out} is a file, not a folder; give --out a folder (a new name, or an existing folder), "
                        "or move the file away")
            return f"{p} is a file, so no folder can be made under it; give --out a path that is not under a file"
    return str(e.strerror or e)


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
    without locks (:data:`_NO_LOCKS`) the file is made unlocked, as before locks were taken."""
    import fcntl   # POSIX only (as dds_env.domain_lock): imported where used, so the package imports anywhere

    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
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
                  unlocked_age_s: float = 3600.0) -> tuple[int, int]:
    """Remove the temporaries in ``folder`` whose names ``ours`` takes that no running tool is writing: those no
    process holds a lock on (:func:`create_locked`; left by a run killed outright, SIGKILL or a power cut), those whose
    names ``unlocked_kind`` takes (an earlier version's, which locked nothing) only once older than ``unlocked_age_s``.
    Returns ``(removed, kept)``, kept being those a running tool holds (or too young to tell) and those it could not
    remove."""
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
            except FileNotFoundError:
                pass
            except OSError:   # (another user's folder: said as kept)
                kept += 1
        finally:
            os.close(fd)
    return removed, kept
