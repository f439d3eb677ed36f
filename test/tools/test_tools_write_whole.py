"""dpt_ros.tools.write_whole: the tools' result files (calibrate_depth --yaml, the benchmarks' --json, sros2_policy
--out, gpu_check's summary) written whole or not at all."""
import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from dpt_ros.tools import write_whole


def test_a_new_file_gets_opens_mode_and_no_temporary_is_left(tmp_path):
    """A new file gets the mode open(path, "w") gives it, 0666 less the umask (not mkstemp's 0600: a calibration
    another user's node reads); a name as long as the file system takes is written (its temporary's name shortened);
    neither leaves a temporary beside it."""
    umask = os.umask(0o027)
    try:
        write_whole(tmp_path / "r.json", "{}\n")
        long_name = "x" * 250 + ".json"   # (255 bytes: ".<name>.partial-<pid>.tmp" would not fit)
        write_whole(tmp_path / long_name, "[]\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640
    assert (tmp_path / "r.json").read_text() == "{}\n" and (tmp_path / long_name).read_text() == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.json", long_name])


def test_a_failed_write_keeps_the_earlier_file_and_a_device_is_written_in_place(tmp_path, file_size_limit,
                                                                                 monkeypatch):
    """A write that fails part-way (EFBIG, the file size limit below the new text's size: for real, as a disk that
    fills up) raises for the caller's message and leaves the earlier file (here bench_reliability's figures, merged
    into per scenario) as it was, where Path.write_text had cut it short, and no temporary. A link to a device
    (/dev/null; /dev/full is the tests' full disk) is written through in place: the device is not replaced by a
    file (as root it could be)."""
    from dpt_ros.tools import bench_reliability

    monkeypatch.setenv("DPT_RELIABILITY_DIR", str(tmp_path))
    earlier = bench_reliability.record("restart", exit_s=0.5)
    figures = tmp_path / "restart.json"
    with file_size_limit(figures.stat().st_size), pytest.raises(OSError) as e:
        bench_reliability.record("restart", stop_s=0.25, note="x" * 100)
    assert figures.read_text() == json.dumps(earlier, indent=2, sort_keys=True, default=str)
    assert e.value.strerror == "File too large" and e.value.filename == str(figures)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restart.json"]
    null = tmp_path / "null.json"
    null.symlink_to("/dev/null")
    write_whole(null, "{}")
    assert null.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.json", "restart.json"]


@contextlib.contextmanager
def _as_user_who_may_not_write_in(folder: Path):
    """This process as a user who may not write in ``folder`` (root's own, 0755: the effective ids of ``nobody``,
    root's again after; a user's: the folder made 0555 meanwhile)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("needs a user 'nobody' to write as")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_permissions_are_those_open_has():
    """A file open(path, "w") may not write is not replaced by a renamed temporary (which the folder would let be
    made): PermissionError, as open raised, the file kept; a file it may write in a folder it may not write in, where
    no temporary can be made, is written in place, as before."""
    folder = Path(tempfile.mkdtemp(prefix="dpt_ros_write_whole_"))   # (not tmp_path: root's 0700 folder)
    try:
        folder.chmod(0o755)
        (folder / "anyone").mkdir(mode=0o777)
        (folder / "anyone").chmod(0o777)   # (a folder the user may write in: the umask left out)
        kept, own = folder / "anyone" / "r.yaml", folder / "w.yaml"
        kept.write_text("kept")
        kept.chmod(0o444)
        own.write_text("old")
        own.chmod(0o666)
        with _as_user_who_may_not_write_in(folder):
            with pytest.raises(PermissionError) as e:
                write_whole(kept, "new")
            write_whole(own, "new")
        assert e.value.filename == str(kept)
        assert kept.read_text() == "kept" and own.read_text() == "new"
        assert sorted(p.name for p in folder.rglob("*")) == ["anyone", "r.yaml", "w.yaml"]   # (no temporary left)
    finally:
        shutil.rmtree(folder)


def test_a_killed_writers_temporary_is_removed_by_the_next_write_a_running_ones_kept(tmp_path):
    """A write killed outright (SIGKILL, a power cut) leaves its temporary (.<name>.partial-<pid>.tmp), which nothing
    removed: the next write of the same file removes it (its writer's lock gone with it), as predict's and weights
    --convert's do; a running writer's (its lock held: a child process, and this process's own) is kept, as is a
    temporary of another file."""
    import signal
    import subprocess
    import sys

    from dpt_ros.tools import create_locked

    holding = ("import os, sys\nfrom pathlib import Path\nfrom dpt_ros.tools import create_locked\n"
               "fd = create_locked(Path(sys.argv[1]) / f'.r.json.partial-{os.getpid()}.tmp')\n"
               "os.write(fd, b'{\"half')\nprint('held', flush=True)\nsys.stdin.read()\n")
    writers = [subprocess.Popen([sys.executable, "-c", holding, str(tmp_path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        assert [w.stdout.readline() for w in writers] == ["held\n", "held\n"]
        killed, running = writers
        killed.send_signal(signal.SIGKILL)
        assert killed.wait() == -signal.SIGKILL
        ours = create_locked(tmp_path / ".r.json.partial-1.tmp")   # (as a thread of this process writing it)
        other = tmp_path / f".other.json.partial-{killed.pid}.tmp"
        other.write_text("{")
        write_whole(tmp_path / "r.json", "{}\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [".r.json.partial-1.tmp", f".r.json.partial-{running.pid}.tmp", other.name, "r.json"])
        os.close(ours)
        running.stdin.close()
        assert running.wait() == 0
        write_whole(tmp_path / "r.json", "[]\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "r.json"]
        assert (tmp_path / "r.json").read_text() == "[]\n"
    finally:
        for w in writers:
            w.kill()
            w.wait()


def test_a_killed_writers_temporary_removed_is_named_on_stderr(tmp_path, capsys):
    """write_whole removed a killed write's temporary without a word: a user who had seen the file there (.r.json.
    partial-<pid>.tmp beside r.json) was not told where it went. Now one line on stderr names it and the file it was
    for; a write with nothing to remove says nothing."""
    from dpt_ros.tools import create_locked

    stale = tmp_path / ".r.json.partial-1.tmp"
    os.close(create_locked(stale))   # (its lock gone with its descriptor: as a writer killed outright left it)
    write_whole(tmp_path / "r.json", "{}\n")
    err = capsys.readouterr().err
    assert not stale.exists() and (tmp_path / "r.json").read_text() == "{}\n"
    assert len(err.splitlines()) == 1, err
    assert f": removed {stale}, a temporary that an earlier write of {tmp_path / 'r.json'} left when it was killed " \
           f"before it finished (SIGKILL, a power cut); {tmp_path / 'r.json'} is written anew" in err, err
    write_whole(tmp_path / "r.json", "[]\n")
    assert capsys.readouterr().err == ""


def test_bytes_are_written_whole_too(tmp_path, file_size_limit):
    """Bytes (the demo's PNG and .npy frames) are written as they are, whole or not at all: a write past the file
    size limit (EFBIG, for real) leaves the earlier file as it was and no temporary; a link to a device is written
    through in place, as text is."""
    data = bytes(range(256)) * 64   # (not UTF-8: written as bytes, not encoded)
    frame = tmp_path / "frame_000_input.png"
    write_whole(frame, data[:100])
    assert frame.read_bytes() == data[:100]
    with file_size_limit(4096), pytest.raises(OSError) as e:
        write_whole(frame, data)
    assert e.value.strerror == "File too large" and e.value.filename == str(frame)
    assert frame.read_bytes() == data[:100]
    assert sorted(p.name for p in tmp_path.iterdir()) == [frame.name]
    null = tmp_path / "null.npy"
    null.symlink_to("/dev/null")
    write_whole(null, data)
    assert null.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == [frame.name, "null.npy"]


def test_a_device_that_refuses_the_write_is_named(tmp_path):
    """A file written in place (a link to a device: /dev/full, which refuses every write with ENOSPC, as a full disk)
    whose write failed raised an OSError naming no file (write's own), where write_whole says it raises of ``path``:
    the demo said 'cannot write None: No space left on device'. It names the file asked for, as open's errors do."""
    full = tmp_path / "frame_001_input.png"
    full.symlink_to("/dev/full")
    for data in ("{}", b"\x89PNG"):
        with pytest.raises(OSError) as e:
            write_whole(full, data)
        assert (e.value.strerror, e.value.filename) == ("No space left on device", str(full))
    assert full.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == [full.name]
