"""Environment variables for DDS processes that mean the same on every supported distro (Humble, Jazzy, Kilted).

Two settings changed name between ROS 2 releases, and each release reads only its own name:

- localhost-only discovery: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` on Jazzy and Kilted (the name came with
  Iron; Jazzy still reads the old name, with a deprecation warning); Humble's rcl knows only ``ROS_LOCALHOST_ONLY=1``.
- the Fast DDS XML profile file: Fast DDS 3 (Kilted) reads ``FASTDDS_DEFAULT_PROFILES_FILE``, Fast DDS 2.x
  (Humble 2.6, Jazzy 2.14) reads ``FASTRTPS_DEFAULT_PROFILES_FILE``. Kilted's rmw also reads the old name,
  but logs a deprecation warning for it in every process, so it is set only for the Fast DDS 2 distros.

A Fast DDS profile with a large shared-memory segment (``config/fastdds_large_data.xml``: 32 MB) takes that
segment in ``/dev/shm`` for every process. Where ``/dev/shm`` is small (Docker's default is 64 MB) the processes
that come later get none and send their images as UDP fragments: :func:`shm_shortage` says so.

No ROS imports: tools use this to build the environment of the processes they start.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, Iterator, Mapping, MutableMapping, Optional

from dpt_ros.ros.console import stderr_line

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: what the node benchmarks' --publication-mode takes (bench_e2e; gpu_check's --e2e-publication-modes, which runs
#: without ROS, checks its entries against it): RMW_FASTRTPS_PUBLICATION_MODE for the node's process, or "default"
#: (left as the environment has it)
PUBLICATION_MODE_CHOICES = ("default", "SYNCHRONOUS", "ASYNCHRONOUS")
# Iron is not supported (end of life since December 2024); it is here because its Fast DDS 2.10 reads only the old
# profile name too, and leaving it out would give it the new name alone: its profile silently unread
_FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")


def localhost_only(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variable that keeps discovery on this machine, for the distro in ``environ`` (``ROS_DISTRO``,
    set by a sourced ROS 2 installation; without it, as from the PyPI wheels, the current name)."""
    if environ.get("ROS_DISTRO") == "humble":
        return {"ROS_LOCALHOST_ONLY": "1"}
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def profile_variables(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The profile variables to set for the distro in ``environ`` (``ROS_DISTRO``): both names for
    Humble and Jazzy (Fast DDS 2 reads the old one; so does the unsupported Iron's); only the new one for
    Kilted, later distros and the PyPI wheels (no ``ROS_DISTRO``), whose rmw warns about the old one."""
    return PROFILE_VARIABLES if environ.get("ROS_DISTRO") in _FAST_DDS_2_DISTROS else PROFILE_VARIABLES[:1]


def set_profile(env: MutableMapping[str, str], profile: Optional[str]) -> MutableMapping[str, str]:
    """Point the distro's Fast DDS profile variables (:func:`profile_variables`) at ``profile`` and remove
    the other name, or remove both when ``profile`` is None / empty (a stale file under the other name
    would otherwise still be read)."""
    wanted = profile_variables(env) if profile else ()
    for key in PROFILE_VARIABLES:
        if key in wanted:
            env[key] = str(profile)
        else:
            env.pop(key, None)
    return env


def profile_of(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The profile file the user set under either name (Fast DDS 3's name first), or None."""
    return next((environ[k] for k in PROFILE_VARIABLES if environ.get(k)), None)


SHM_DIR = "/dev/shm"
# a process's share of /dev/shm per byte of segment_size (measured with Fast DDS 3.2: 33.6 MiB for 32 MiB)
SHM_OVERHEAD = 1.05
# the fewest processes that exchange images: the camera driver, dpt_node and one subscriber
SHM_PROCESSES = 3
# Fast DDS's own default segment (512 KB) is not the large-data profile's and is not checked
_SHM_DEFAULT_SEGMENT = 512 * 1024


def shm_segment_size(profile: str) -> Optional[int]:
    """The largest ``segment_size`` of the shared-memory (``SHM``) transports in the Fast DDS XML file
    ``profile``, in bytes; None when it has none or cannot be read."""
    try:
        root = ET.parse(profile).getroot()
    except (OSError, ET.ParseError):
        return None
    sizes = []
    for desc in root.iter():
        if not desc.tag.endswith("transport_descriptor"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in desc}
        if fields.get("type", "").upper() == "SHM" and fields.get("segment_size", "").isdigit():
            sizes.append(int(fields["segment_size"]))
    return max(sizes, default=None)


def shm_shortage(environ: Mapping[str, str] = os.environ, shm_dir: str = SHM_DIR,
                 processes: int = SHM_PROCESSES, who: str = "a camera, dpt_node and one subscriber") -> Optional[str]:
    """Why the Fast DDS profile in ``environ`` (:func:`profile_of`) will not get its shared-memory segments in
    ``shm_dir``, with what to do; None when they fit, or when no profile with a segment larger than Fast DDS's
    default is set. Call it before this process's participant exists (``rclpy.init``), as its segment then is
    not yet taken. Two shortfalls: the free space holds no segment for this process, or the whole of
    ``shm_dir`` holds fewer than ``processes`` of them (Docker's 64 MB: one). ``who``: those ``processes``, as the
    message names them."""
    profile = profile_of(environ)
    segment = shm_segment_size(profile) if profile else None
    if not segment or segment <= _SHM_DEFAULT_SEGMENT:
        return None
    try:
        st = os.statvfs(shm_dir)
    except OSError:
        return None
    need = segment * SHM_OVERHEAD
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    fits = int(total // need)
    if free >= need and fits >= processes:
        return None
    mib = 1024 * 1024
    found = (f"{shm_dir} has {free / mib:.0f} MiB free, too little for this process's segment" if free < need
             else f"{shm_dir} is {total / mib:.0f} MiB, room for {fits} of them")
    wanted = 2 ** math.ceil(math.log2(processes * need / mib + 16))   # and some for Fast DDS's other files
    return (f"the Fast DDS profile {profile} gives every process a {segment / mib:.0f} MiB shared-memory segment "
            f"(about {need / mib:.0f} MiB of {shm_dir} each: the camera driver, dpt_node and every subscriber), "
            f"but {found}; a process without one logs 'Failed to create segment' and 'Unable to Register SHM "
            f"Transport' and sends its images as UDP fragments, which lose most camera-sized frames. Give "
            f"{shm_dir} {need / mib:.0f} MiB free per process, at least {wanted} MiB for {who} "
            f"(Docker: docker run --shm-size={wanted}m, or --ipc=host; compose: shm_size)")


def shm_notice(program: str, environ: Mapping[str, str] = os.environ, processes: int = SHM_PROCESSES,
               who: str = "a camera, dpt_node and one subscriber") -> Optional[str]:
    """:func:`shm_shortage` for a tool that is no ROS node yet (a benchmark about to start its processes): said on
    stderr as ``<program>: warning: ...`` where there is one; returned too."""
    why = shm_shortage(environ, processes=processes, who=who)
    if why:
        stderr_line(f"{program}: warning: {why}")
    return why


class DomainBusy(TimeoutError):
    """Another process kept a ROS domain this process asked for (:func:`domain_lock`)."""


@contextlib.contextmanager
def domain_lock(domains: Iterable[int], timeout: float = 1800.0, lock_dir: Optional[str] = None,
                notice: Callable[[str], None] = stderr_line) -> Iterator[None]:
    """Hold ROS ``domains`` for this process: an exclusive lock per domain (``flock`` on a file in
    ``lock_dir``, default the temporary directory), so that two test runs on one machine take turns on a
    domain instead of reading each other's topics (the node is ``/dpt_node`` in every run). Locks are
    taken in ascending order (no deadlock between two holders of overlapping sets) and released when the
    block ends or the process dies. Waiting is announced once through ``notice``, naming the holder's pid;
    after ``timeout`` seconds :class:`DomainBusy` is raised. Processes that ignore the lock (a ``ros2``
    CLI, another stack) are not kept out: pick domains nobody else uses."""
    lock_dir = lock_dir or tempfile.gettempdir()
    held: list[int] = []
    try:
        for domain in sorted(set(int(d) for d in domains)):
            path = _lock_path(lock_dir, domain)
            held.append(_open_lock(path))
            deadline, announced = time.monotonic() + timeout, False
            while not _try_lock(held[-1]):
                holder = _holder(held[-1])
                if time.monotonic() >= deadline:
                    raise DomainBusy(f"ROS domain {domain} is still in use by process {holder} after "
                                     f"{timeout:g} s ({path}); wait for that test run to end or stop it")
                if not announced:
                    notice(f"waiting for ROS domain {domain}: process {holder} is using it ({path})")
                    announced = True
                time.sleep(0.05)
        yield
    finally:
        for fd in held:
            os.close(fd)   # closing the descriptor releases its lock


@contextlib.contextmanager
def free_domains(count: int, candidates: Iterable[int], timeout: float = 1800.0, lock_dir: Optional[str] = None,
                 notice: Callable[[str], None] = stderr_line
                 ) -> Iterator[list[int]]:
    """Hold ``count`` ROS domains for this process, the first of ``candidates`` (in their order) that no other
    process holds, through :func:`domain_lock`'s locks (so test modules' ``DOMAIN`` / ``DOMAINS`` and other tools'
    runs wait for them, and they for those): for a tool that needs domains of its own but not particular ones
    (gpu_check's ROS steps). Yields the domains, in ``candidates``' order. Where fewer than ``count`` are free, it
    waits for the rest (announced once through ``notice``) and raises :class:`DomainBusy` after ``timeout`` s."""
    lock_dir = lock_dir or tempfile.gettempdir()
    candidates = list(dict.fromkeys(int(d) for d in candidates))
    if count > len(candidates):
        raise ValueError(f"{count} ROS domains asked for among {len(candidates)} candidates")
    held: dict[int, int] = {}
    deadline, announced = time.monotonic() + timeout, False
    try:
        while True:
            for domain in candidates:
                if len(held) == count:
                    break
                if domain in held:
                    continue
                fd = _open_lock(_lock_path(lock_dir, domain))
                if _try_lock(fd):
                    held[domain] = fd
                else:
                    os.close(fd)
            if len(held) == count:
                break
            busy = [d for d in candidates if d not in held]
            if time.monotonic() >= deadline:
                raise DomainBusy(f"{count - len(held)} more of ROS domains {', '.join(map(str, busy))} still in use "
                                 f"after {timeout:g} s ({lock_dir}); wait for those runs to end or stop them")
            if not announced:
                notice(f"waiting for {count - len(held)} more of ROS domains {', '.join(map(str, busy))}: other "
                       f"processes hold them ({lock_dir})")
                announced = True
            time.sleep(0.05)
        yield sorted(held, key=candidates.index)
    finally:
        for fd in held.values():
            os.close(fd)


def _lock_path(lock_dir: str, domain: int) -> str:
    return os.path.join(lock_dir, f"dpt_ros_ros_domain_{domain}.lock")


def _open_lock(path: str) -> int:
    """A descriptor of a domain's lock file (made where missing)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:   # another user's lock file: flock needs no write access
        return os.open(path, os.O_RDONLY)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; True when taken, and then this process's pid written into
    the file where it is writable (who holds it, for the next waiter's message)."""
    import fcntl   # POSIX only, as is the rest of the test harness

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:   # (opened read-only: another user's file, whose holder is then not named)
        pass
    return True


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"


#: the highest ROS domain Fast DDS can use: it derives its UDP ports from the domain (7400 + 250 x domain + up to 11),
#: and above 232 they pass 65535; there rclpy.init still succeeds, but the process's first node ends it (exit status 1,
#: "Calculated port number is too high. Probably the domainId is over 232"). ROS 2's documentation gives 0..232 too.
DOMAIN_MAX = 232


def domain_problem(domain: int) -> Optional[str]:
    """Why ``domain`` is no ROS domain a node can use ('is no usable ROS domain (...)'), None for 0..DOMAIN_MAX."""
    if domain > DOMAIN_MAX:
        return (f"is no usable ROS domain (Fast DDS's ports for a domain above {DOMAIN_MAX} pass 65535: its first node "
                f"ends the process)")
    return "is no usable ROS domain" if domain < 0 else None


def env_domain_problem(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """Why ROS_DOMAIN_ID in ``environ`` cannot work for a node, said with what to do; None where it can, or where rcl
    itself refuses it at rclpy.init with its reason (not a whole number: 'ROS_DOMAIN_ID is not an integral number').
    With Fast DDS (RMW_IMPLEMENTATION unset, ROS 2's default, or a Fast DDS rmw) a number above DOMAIN_MAX passes
    rclpy.init and ends the process at its first node (exit status 1); another rmw (rmw_zenoh_cpp has no DDS ports)
    is left to say for itself."""
    if environ.get("RMW_IMPLEMENTATION", "").strip() not in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return None
    value = environ.get("ROS_DOMAIN_ID", "").strip()
    why = domain_problem(int(value)) if value.isdigit() else None
    return f"ROS_DOMAIN_ID={value} {why}: set it to 0..{DOMAIN_MAX}" if why else None


def domain_from_env(default: int) -> int:
    """ROS_DOMAIN_ID as rcl reads it (unset or empty: the default domain; here the tool's own ``default``)."""
    value = os.environ.get("ROS_DOMAIN_ID", "").strip()
    return int(value) if value.isdigit() else default
