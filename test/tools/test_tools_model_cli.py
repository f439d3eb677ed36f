"""dpt_ros.tools.weights and dpt_ros.tools.bench_model command lines (CPU, dpt_tiny)."""

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dpt_ros
from dpt_ros.model import DPT, VARIANTS, CheckpointError, get_variant, load_engine
from dpt_ros.model.checkpoint import load_checkpoint, read_state_dict
from dpt_ros.model.reference import random_state_dict
from dpt_ros.tools import bench_model, weights


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    p = d / "tmp.pt"
    torch.save({"model": random_state_dict("dpt_tiny", seed=5), "optimizer": {}}, p)
    named = d / f"dpt_tiny-{hashlib.sha256(p.read_bytes()).hexdigest()[:8]}.pt"
    p.rename(named)
    return named


def test_urls(capsys):
    assert weights.main(["--urls"]) == 0
    out = capsys.readouterr().out
    for v in VARIANTS.values():
        assert v.name in out
        if v.url:
            assert v.url in out and v.sha256_prefix in out
    assert "huggingface.co/Intel/dpt-hybrid-midas" in out


@pytest.mark.parametrize("argv", [["dpt_ros.tools.weights", "--urls"], ["dpt_ros.tools.sros2_policy", "--out", "-"]])
def test_a_reader_that_went_away_ends_the_tool_quietly(argv):
    """`weights --urls | head -3`: Python ignores SIGPIPE, so the tool's write into the pipe whose reader had gone
    raised BrokenPipeError, a traceback on stderr (two: the interpreter's flush at exit too), exit status 1. It ends
    quietly now, with a killed-by-SIGPIPE program's status, 141. (The pipe's read end is closed before the tool starts,
    so that every write finds no reader.)"""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=300)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_urls_of_one_variant(capsys):
    """--urls --variant NAME printed every variant's URLs, --variant silently ignored; it prints the header and
    NAME's rows only."""
    full = weights.urls_text().splitlines()
    assert weights.main(["--urls", "--variant", "dpt_hybrid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hybrid = next(i for i, line in enumerate(full) if line.startswith("dpt_hybrid "))
    assert lines == [full[0]] + full[hybrid:hybrid + 3]   # the release, MiDaS v3, Hugging Face
    assert weights.main(["--urls", "--variant", "dpt_tiny"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"{'dpt_tiny':<19} {'depth':<13} {'128x128':<9} {'-':<9} (no released weights: architecture only)"]


def test_verify_ok_and_corrupt(tiny_file, tmp_path, capsys):
    assert weights.main(["--verify", str(tiny_file), "--variant", "dpt_tiny"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "matches variant(s): dpt_tiny" in out and "strict load as dpt_tiny: OK" in out
    bad = tmp_path / tiny_file.name
    bad.write_bytes(tiny_file.read_bytes()[:-100])
    assert weights.main(["--verify", str(bad)]) == 1
    assert "corrupt or truncated" in capsys.readouterr().err
    # wrong variant: the strict load fails and names the right one
    assert weights.main(["--verify", str(tiny_file), "--variant", "dpt_hybrid"]) == 1
    assert "dpt_tiny" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:   # (a usage error: test_a_path_naming_no_file_is_a_usage_error...)
        weights.main(["--verify", str(tmp_path / "nope.pt")])
    assert e.value.code == 2
    capsys.readouterr()
    # a name without a hash (the user's own weights, as the node accepts them): the hash is information only,
    # the architecture check decides (before, any such .pt was called corrupt against the release's hash)
    mine = tmp_path / "my_finetuned.pt"
    mine.write_bytes(tiny_file.read_bytes())
    assert weights.main(["--verify", str(mine), "--variant", "dpt_hybrid"]) == 1
    captured = capsys.readouterr()
    assert "differs from the DPT release file" in captured.out and "corrupt or truncated" not in captured.err
    assert "dpt_tiny" in captured.err


def test_convert_to_hf_and_back(tiny_file, tmp_path):
    hf = tmp_path / "model.safetensors"
    assert weights.main(["--convert", str(tiny_file), str(hf), "--variant", "dpt_tiny", "--to", "hf"]) == 0
    back = tmp_path / "official.pt"
    assert weights.main(["--convert", str(hf), str(back), "--variant", "dpt_tiny", "--to", "official"]) == 0
    x = torch.randn(1, 3, 64, 64)
    ref = load_engine("dpt_tiny", tiny_file).run(x)["inverse_depth"]
    for p in (hf, back):
        assert torch.equal(load_engine("dpt_tiny", p).run(x)["inverse_depth"], ref)



def test_convert_to_a_place_it_cannot_write_is_one_line(tiny_file, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert weights.main(["--convert", str(tiny_file), str(blocker / "model.safetensors"), "--variant", "dpt_tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"FAILED: cannot write {blocker / 'model.safetensors'}: ") and "Traceback" not in err
    # a destination where no file can be made with the system's FileNotFoundError (in /proc) is the destination's
    # too, while a missing source is the loader's "no such file"
    missing = Path("/proc/dpt_ros_convert_test.pt")
    assert weights.main(["--convert", str(tiny_file), str(missing), "--variant", "dpt_tiny"]) == 1
    err = capsys.readouterr().err
    assert err == f"FAILED: cannot write {missing}: No such file or directory\n", err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("name, to", [("model.safetensors", "hf"), ("tiny.pt", "official")])
def test_convert_past_the_file_size_limit_says_the_limit_and_what_to_do(tiny_file, tmp_path, capsys, file_size_limit,
                                                                       name, to):
    """A DST write that fails with EFBIG (the file size limit, ulimit -f: provoked for real) said only 'FAILED: cannot
    write DST: File too large' (.safetensors), or ended with a traceback of torch's zip writer, "RuntimeError: [enforce
    fail at inline_container.cc] . unexpected pos" (.pt); it is said in the words of the other tools' output files
    now (dpt_ros.tools.output_folder_error): the limit in bytes, the ulimit -f that set it, and what to do. DST is not
    made and no temporary is left."""
    dst = tmp_path / "out" / name
    dst.parent.mkdir()
    with file_size_limit(4096):   # (the converted dpt_tiny is larger)
        code = weights.main(["--convert", str(tiny_file), str(dst), "--variant", "dpt_tiny", "--to", to])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err == (f"FAILED: cannot write {dst}: the file is larger than this process's file size limit, 4096 bytes "
                   "(File too large; ulimit -f 4 in the shell that started it): raise it (ulimit -f unlimited)\n"), err
    assert list(dst.parent.iterdir()) == []


def test_a_path_naming_no_file_is_a_usage_error_and_verify_says_where_to_download(tmp_path, capsys):
    """FILE or SRC naming no file is a usage error (exit status 2, as the docstring's 'Exit status' and the other
    tools' --weights naming no file): it exited 1 with 'FAILED: weights file not found: ...' (--convert), and --verify
    of a release file not downloaded yet said only 'FAILED: no such file: ...', where the node's own message for
    missing weights gives their URL. Now --verify says where to download them (the variant's URL, by --variant or by
    the release name) and that --urls lists them all; --convert's missing source is just that."""
    urls = "python -m dpt_ros.tools.weights --urls lists the official weights of every variant"

    def refusal(*argv):
        with pytest.raises(SystemExit) as e:
            weights.main(list(argv))
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("usage: "), err
        return err.splitlines()[-1].split(" error: ", 1)[1]

    hybrid = get_variant("dpt_hybrid")
    release = tmp_path / "weights" / hybrid.checkpoint
    assert refusal("--verify", str(release)) == (f"--verify: no such file: {release}; download it first: the "
                                                 f"official dpt_hybrid weights are {hybrid.url} ({urls})")
    mine = tmp_path / "mine.pt"
    large = get_variant("dpt_large")
    assert refusal("--verify", str(mine), "--variant", "dpt_large") == \
        f"--verify: no such file: {mine}; download it first: the official dpt_large weights are {large.url} ({urls})"
    assert refusal("--verify", str(mine)) == f"--verify: no such file: {mine}; download it first ({urls})"
    assert refusal("--verify", str(mine), "--variant", "dpt_tiny") == \
        f"--verify: no such file: {mine}; download it first ({urls})"   # (no released weights)
    assert refusal("--verify", "") == "--verify: no file given (an empty path); give a checkpoint file"
    # a missing source is just that (not the loader's advice on a variant's release weights: no use for a convert)
    for variant in ("dpt_tiny", "dpt_hybrid"):
        assert refusal("--convert", str(tmp_path / "gone.pt"), str(tmp_path / "out.pt"), "--variant", variant) == \
            f"--convert: SRC: no such file: {tmp_path / 'gone.pt'}"
    assert not (tmp_path / "out.pt").exists()
    # the functions raise as before, with the same reason
    with pytest.raises(FileNotFoundError, match=r"^no such file: .*gone\.pt$"):
        weights.convert(tmp_path / "gone.pt", tmp_path / "out.pt", "dpt_tiny", "official")
    with pytest.raises(FileNotFoundError, match=r"^no such file: .*mine\.pt$"):
        weights.verify(mine, None)


def test_convert_never_writes_over_its_source(tiny_file, tmp_path, monkeypatch, capsys):
    """DST naming SRC under any spelling (as given, ./name, dir/../name, a symlink, a hard link) is a usage error of
    one line saying what to do, with the source untouched (it was overwritten with the converted tensors)."""
    src = tmp_path / "tiny.pt"
    src.write_bytes(tiny_file.read_bytes())
    original = src.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pt").symlink_to(src)
    os.link(src, tmp_path / "hard.pt")
    monkeypatch.chdir(tmp_path)
    for dst in (str(src), "./tiny.pt", str(tmp_path / "sub" / ".." / "tiny.pt"), "link.pt", str(tmp_path / "hard.pt")):
        with pytest.raises(SystemExit) as e:
            weights.main(["--convert", str(src), dst, "--variant", "dpt_tiny", "--to", "official"])
        err = capsys.readouterr().err.splitlines()
        assert e.value.code == 2, dst
        assert f" error: --convert: DST {Path(dst)} is the same file as SRC {src} " in err[-1] and \
            err[-1].endswith(f"give another DST, e.g. {tmp_path / 'tiny_converted.pt'}"), err
        assert src.read_bytes() == original
    with pytest.raises(SystemExit) as e:   # the other way round: SRC the link, DST the file
        weights.main(["--convert", "link.pt", "tiny.pt", "--variant", "dpt_tiny"])
    assert e.value.code == 2 and "is the same file as SRC link.pt" in capsys.readouterr().err
    snap = tmp_path / "snapshot"   # a Hugging Face snapshot folder stands for its weights file
    snap.mkdir()
    weights.convert(src, snap / "model.safetensors", "dpt_tiny", "hf")
    snapshot = (snap / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit) as e:
        weights.main(["--convert", str(snap), str(snap / "model.safetensors"), "--variant", "dpt_tiny"])
    assert e.value.code == 2 and "is the same file as SRC" in capsys.readouterr().err
    assert (snap / "model.safetensors").read_bytes() == snapshot
    with pytest.raises(ValueError, match="same file as SRC"):   # the function refuses as well
        weights.convert(src, tmp_path / "link.pt", "dpt_tiny", "official")
    assert src.read_bytes() == original and (tmp_path / "link.pt").is_symlink()


def test_convert_into_a_folder_that_does_not_exist_makes_none(tiny_file, tmp_path, capsys):
    dst = tmp_path / "nonexist" / "dir" / "x.safetensors"
    assert weights.main(["--convert", str(tiny_file), str(dst), "--variant", "dpt_tiny"]) == 1
    folder = tmp_path / "nonexist" / "dir"
    assert capsys.readouterr().err == (f"FAILED: cannot write {dst}: the folder {folder} does not exist; create it "
                                       f"first (mkdir -p {folder}) or give a DST in an existing folder\n")
    assert list(tmp_path.iterdir()) == []


def test_convert_to_a_folder_or_an_empty_dst_is_said_before_converting(tiny_file, tmp_path, monkeypatch, capsys):
    """DST a folder: refused before SRC is read, saying to name a file (it was found by the rename after the whole
    conversion: 'FAILED: cannot write out: Is a directory'); an empty DST, which named the working folder ('FAILED:
    cannot write : Is a directory'), is a usage error as an empty SRC is."""
    folder = tmp_path / "out"
    folder.mkdir()
    for to, name in (("hf", "model.safetensors"), ("official", "dpt_tiny.pt")):
        assert weights.main(["--convert", str(tiny_file), str(folder), "--variant", "dpt_tiny", "--to", to]) == 1
        assert capsys.readouterr().err == \
            f"FAILED: cannot write {folder}: {folder} is a folder; give DST as a file name, e.g. {folder / name}\n"
    text = tmp_path / "text.pt"   # (not read: a checkpoint it cannot load would be said if it were)
    text.write_text("not weights")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        weights.convert(text, folder, "dpt_tiny", "hf")
    text.unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        weights.main(["--convert", str(tiny_file), "", "--variant", "dpt_tiny"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.splitlines()[-1].endswith(
        " error: --convert: DST: no file given (an empty path); give the file to write, e.g. model.safetensors"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and list(folder.iterdir()) == []
    # the suggested file is written
    assert weights.main(["--convert", str(tiny_file), str(folder / "model.safetensors"), "--variant", "dpt_tiny"]) == 0
    assert load_checkpoint(folder, get_variant("dpt_tiny")).variant.name == "dpt_tiny"   # (a snapshot folder)


def test_convert_writes_whole_files_or_none(tiny_file, tmp_path):
    """A convert that fails while writing (here: the file size limit, a full disk's stand-in) leaves DST as it was
    and no temporary file; one that succeeds leaves DST (with the permissions a new file gets) and nothing else; a
    DST that is a symlink is replaced where it points, the link kept."""
    import resource

    dst = tmp_path / "model.safetensors"
    dst.write_bytes(b"the previous conversion")
    cmd = [sys.executable, "-m", "dpt_ros.tools.weights", "--convert", str(tiny_file), str(dst),
           "--variant", "dpt_tiny"]
    limited = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20)))
    assert limited.returncode == 1, limited.stderr[-2000:]
    assert limited.stderr == (f"FAILED: cannot write {dst}: the file is larger than this process's file size limit, "
                              "1048576 bytes (File too large; ulimit -f 1024 in the shell that started it): raise it "
                              "(ulimit -f unlimited)\n")
    assert dst.read_bytes() == b"the previous conversion" and [p.name for p in tmp_path.iterdir()] == [dst.name]

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == f"wrote {dst} (270 tensors, hf names)\n", done.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == [dst.name]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o666 & ~umask
    ref = load_engine("dpt_tiny", tiny_file).run(torch.ones(1, 3, 64, 64))["inverse_depth"]
    assert torch.equal(load_engine("dpt_tiny", dst).run(torch.ones(1, 3, 64, 64))["inverse_depth"], ref)

    real = tmp_path / "store" / "official.pt"
    real.parent.mkdir()
    real.write_bytes(b"old")
    (tmp_path / "link.pt").symlink_to(real)
    assert weights.main(["--convert", str(dst), str(tmp_path / "link.pt"), "--variant", "dpt_tiny",
                         "--to", "official"]) == 0
    assert (tmp_path / "link.pt").is_symlink() and sorted(p.name for p in real.parent.iterdir()) == ["official.pt"]
    assert set(read_state_dict(real)) == set(random_state_dict("dpt_tiny", seed=5))


# a --convert that stops part-way through writing DST's temporary (the real convert; torch.save writes a little and
# waits): where SIGKILL finds it
_STALLED_CONVERT = """
import sys, time, torch
from pathlib import Path
from dpt_ros.tools import weights
def stall(obj, f):
    f.write(b"half a checkpoint")
    f.flush()
    print("writing", flush=True)
    time.sleep(600)
torch.save = stall
weights.convert(Path(sys.argv[1]), Path(sys.argv[2]), "dpt_tiny", "official")
"""


def test_a_killed_conversions_temporary_is_removed_by_the_next_one(tiny_file, tmp_path):
    """SIGKILL (or a power cut) while --convert writes leaves its temporary in DST's folder (a checkpoint's size: up
    to 1.3 GB), which nothing removed (was left forever): the next --convert to the same DST removes it and says so,
    an earlier version's (mkstemp's name, no lock) once an hour old; other files stay, a running conversion's too."""
    dst = tmp_path / "out.pt"

    def stalled() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _STALLED_CONVERT, str(tiny_file), str(dst)],
                                stdout=subprocess.PIPE, text=True)
        if proc.stdout.readline() != "writing\n":
            proc.kill()
            proc.wait()
            raise AssertionError("the stalled conversion did not start writing")
        return proc

    running = stalled()
    try:
        (held,) = (p.name for p in tmp_path.iterdir())
        killed = stalled()   # (its own start leaves the running one's temporary alone)
        killed.kill()
        killed.wait()
        (gone,) = {p.name for p in tmp_path.iterdir()} - {held}
        assert gone.startswith(".out.pt.") and gone.endswith(".tmp") and not dst.exists()
        for name, age_s in ((".out.pt.k2j4_x9q.tmp", 7200), (".out.pt.a8b7c6d5.tmp", 60),
                            (".other.pt.partial-1.tmp", 7200)):
            (tmp_path / name).write_bytes(b"x")
            os.utime(tmp_path / name, (time.time() - age_s,) * 2)
        done = subprocess.run([sys.executable, "-m", "dpt_ros.tools.weights", "--convert", str(tiny_file), str(dst),
                               "--variant", "dpt_tiny"], capture_output=True, text=True, timeout=300)
    finally:
        running.kill()
        running.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == (f"wrote {dst} (270 tensors, hf names); removed 2 temporary file(s) (.out.pt.*.tmp) that "
                           f"a conversion killed while writing left in {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([held, ".out.pt.a8b7c6d5.tmp",
                                                                 ".other.pt.partial-1.tmp", "out.pt"])
    assert len(read_state_dict(dst)) == 270


def test_a_dst_whose_name_fits_is_converted_though_its_temporarys_name_would_not(tiny_file, tmp_path, capsys):
    """A DST whose name fits the file system (5 bytes short of its limit) failed with "cannot write DST: File name too
    long" after the whole conversion: its temporary, .<DST name>.partial-<pid>.tmp, is 15 to 21 bytes longer. Such a
    temporary is now shortened to the limit (.<head>~<digest><extension>.partial-<pid>.tmp): DST is written and
    nothing else, and one that a conversion killed outright left is removed by the next --convert to that DST, another
    DST's shortened temporary kept."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    dst = tmp_path / ("w" * (limit - 8) + ".pt")
    assert len(os.fsencode(dst.name)) == limit - 5
    assert weights.main(["--convert", str(tiny_file), str(dst), "--variant", "dpt_tiny", "--to", "official"]) == 0, \
        capsys.readouterr().err
    assert capsys.readouterr().out == f"wrote {dst} (222 tensors, official names)\n"
    assert [p.name for p in tmp_path.iterdir()] == [dst.name] and len(read_state_dict(dst)) == 222

    from dpt_ros.tools import shortened_tail   # (after the conversion: what the old code's failure was)

    killed = subprocess.Popen([sys.executable, "-c", _STALLED_CONVERT, str(tiny_file), str(dst)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline() == "writing\n", "the stalled conversion did not start writing"
    finally:
        killed.kill()
        killed.wait()
    (left,) = {p.name for p in tmp_path.iterdir()} - {dst.name}
    assert len(os.fsencode(left)) <= limit and left.startswith(".www") and \
        left.endswith(f"{shortened_tail(dst.name)}.partial-{killed.pid}.tmp"), left
    other = ".www" + shortened_tail("x" + dst.name[1:]) + ".partial-1.tmp"   # (another DST's: a digest of its own)
    (tmp_path / other).write_bytes(b"x")
    assert weights.main(["--convert", str(tiny_file), str(dst), "--variant", "dpt_tiny", "--to", "official"]) == 0
    assert capsys.readouterr().out == (f"wrote {dst} (222 tensors, official names); removed 1 temporary file(s) "
                                       f"(.*{shortened_tail(dst.name)}.partial-*.tmp) that a conversion killed while "
                                       f"writing left in {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dst.name, other])


def test_a_dst_name_too_long_for_the_file_system_is_said_with_its_length_before_src_is_read(tmp_path, capsys):
    """A DST name longer than the file system takes was "File name too long" and no more: it is said with its length
    and the limit, and what to do, before SRC is read (here no checkpoint at all: its refusal would come first were it
    read); nothing is written."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    src = tmp_path / "not_a_checkpoint.pt"
    src.write_bytes(b"not a checkpoint")
    dst = tmp_path / ("w" * (limit - 2) + ".pt")
    assert weights.main(["--convert", str(src), str(dst), "--variant", "dpt_tiny"]) == 1
    err = capsys.readouterr().err
    assert err == (f"FAILED: cannot write {dst}: File name too long ({limit + 1} bytes; the file system of "
                   f"{os.path.realpath(tmp_path)} takes names of {limit} bytes at most): give DST a shorter file "
                   "name\n"), err
    assert [p.name for p in tmp_path.iterdir()] == [src.name]


def test_bench_model_quick_json(capsys):
    rc = bench_model.main(["--variants", "dpt_tiny", "--quick", "--iters", "1", "--warmup", "0", "--json", "-"])
    assert rc == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)
    (row,) = payload["results"]
    assert row["variant"] == "dpt_tiny" and row["precision"] == "fp32" and row["device"] == "cpu"
    assert row["ours_ms"] > 0 and row["hf_ms"] > 0 and row["ratio"] == pytest.approx(row["ours_ms"] / row["hf_ms"])
    assert row["params_m"] == pytest.approx(7.34, abs=0.01)
    # on the CPU one process holds both models: no per-model peak, only the process's (and named so)
    assert row["ours_peak_mb"] is None and row["hf_peak_mb"] is None and row["process_peak_rss_mb"] > 100
    # the printed line gives that figure too (it said "peak        - MB", as if nothing had been measured, while
    # docs/benchmarks.md quotes the CPU's process_peak_rss_mb)
    (line,) = [s for s in err.splitlines() if s.startswith("dpt_tiny ")]
    assert f"  process peak RSS {row['process_peak_rss_mb']:.0f} MB  params 7.3 M" in line and " - MB" not in line, line


def test_bench_model_threads_are_set_for_its_run_only(tmp_path, file_size_limit, capsys):
    """--threads N set PyTorch's thread count for the whole process and left it so: bench_model's main() called
    in-process (from another tool, a test) changed its caller's count for good. The run has N threads (env.threads
    says so), and the caller's count is set back when main returns, and when it raises (for real here: its --json file
    cannot be written past the file size limit, EFBIG)."""
    before = torch.get_num_threads()
    n = before + 2
    argv = ["--variants", "dpt_tiny", "--quick", "--iters", "1", "--warmup", "0", "--no-hf", "--threads", str(n)]
    assert bench_model.main([*argv, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["env"]["threads"] == n
    assert torch.get_num_threads() == before, "--threads left the caller's thread count changed"
    with file_size_limit(64), pytest.raises(OSError) as e:
        bench_model.main([*argv, "--json", str(tmp_path / "bench.json")])
    assert e.value.strerror == "File too large" and not (tmp_path / "bench.json").exists()
    assert torch.get_num_threads() == before, "--threads left the caller's thread count changed (main raised)"


def test_bench_model_tf32_and_cudnn_autotuning_are_set_for_its_run_only(tmp_path, file_size_limit, capsys):
    """A CUDA run set torch.backends' TF32 flags off and cudnn.benchmark as --cudnn-benchmark said, settings of the
    whole process, and left them so: bench_model's main() called in-process (gpu_check, a test) changed its caller's
    for good. Every run now sets them (on the CPU they change nothing; env says what the run had), and the caller's
    are set back when main returns, and when it raises (for real: --json past the file size limit, EFBIG)."""
    backends = torch.backends
    flags = lambda: (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark)  # noqa: E731
    own = flags()
    argv = ["--variants", "dpt_tiny", "--quick", "--iters", "1", "--warmup", "0", "--no-hf"]
    try:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark = True, True, True
        assert bench_model.main([*argv, "--json", "-"]) == 0
        env = json.loads(capsys.readouterr().out)["env"]
        assert (env["tf32"], env["cudnn_benchmark"]) == (False, False)
        assert flags() == (True, True, True), "bench_model left the caller's TF32 / cudnn.benchmark changed"
        backends.cudnn.benchmark = False
        with file_size_limit(64), pytest.raises(OSError) as e:
            bench_model.main([*argv, "--cudnn-benchmark", "--json", str(tmp_path / "bench.json")])
        assert e.value.strerror == "File too large"
        assert "'cudnn_benchmark': True" in capsys.readouterr().out   # (the run had it: its "# {env}" line)
        assert flags() == (True, True, False), "bench_model left them changed (main raised)"
    finally:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark = own


def test_bench_model_sets_back_the_callers_float32_matmul_precision(tmp_path):
    """A caller's torch.set_float32_matmul_precision("medium") came back as allow_tf32 True only: torch then read
    "high", or refused to say (a mix of its legacy flags and the precision API), after bench_model's main() had set
    TF32 off for its run. Now the caller's precision is set back as it was."""
    try:
        torch.set_float32_matmul_precision("medium")
        assert bench_model.main(["--variants", "dpt_tiny", "--quick", "--iters", "1", "--warmup", "0", "--no-hf",
                                 "--json", str(tmp_path / "bench.json")]) == 0
        assert torch.get_float32_matmul_precision() == "medium"
        assert torch.backends.cuda.matmul.allow_tf32
    finally:   # (torch's default; what tests before this one left may be a mix torch will not read back)
        torch.set_float32_matmul_precision("highest")


def test_bench_model_times_hf_segmentation_without_its_auxiliary_head():
    """transformers' DPTForSemanticSegmentation computes its training-only auxiliary head in every forward pass when
    it has one; the official inference, and ours, never run it (ours holds ``auxlayer``): it was timed as HF's. A
    dpt_tiny-sized segmentation configuration: HF's parameters are ours less auxlayer's, and the log says so."""
    v = get_variant("dpt_tiny").replace(name="dpt_tiny_seg", task="segmentation", num_classes=150, use_bn=True)
    lines = []
    (row,) = bench_model.bench_variant(v, [(64, 64)], torch.device("cpu"), ["fp32"], False, 0, 1, with_hf=True,
                                       hf_graphs=False, batch=1, log=lines.append)
    with torch.device("meta"):
        ours = DPT(v)
    aux = sum(p.numel() for p in ours.auxlayer.parameters())
    run = sum(p.numel() for p in ours.parameters()) - aux
    assert aux == 64 * 64 * 9 + 2 * 64 + 64 * 150 + 150   # conv 3x3 (no bias), BatchNorm, conv 1x1 to 150 classes
    assert row["hf_params_m"] == round(run / 1e6, 2) == 7.36 and row["params_m"] == round((run + aux) / 1e6, 2) == 7.41
    assert row["hf_ms"] > 0 and row["ratio"] == pytest.approx(row["ours_ms"] / row["hf_ms"])
    assert row["hf_model"] == ("DPTForSemanticSegmentation, 7.36 M parameters, auxiliary head off (training-only; "
                               "ours holds auxlayer and never runs it)")
    assert f"# dpt_tiny_seg: HF reference {row['hf_model']}" in lines, lines


def test_to_without_convert_is_a_usage_error(tiny_file, capsys):
    """--to (the key names --convert writes) given to --verify or --urls was taken and ignored, exit 0."""
    for argv, what in ((["--verify", str(tiny_file), "--to", "official"], "verify"), (["--urls", "--to", "hf"], "urls")):
        with pytest.raises(SystemExit) as e:
            weights.main(argv)
        assert e.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(
            f"error: --to names the keys --convert writes; --{what} writes no file")


def test_bench_model_non_square_without_hf(capsys):
    rc = bench_model.main(["--variants", "dpt_tiny", "--sizes", "64x64", "64x128", "--iters", "1",
                           "--warmup", "0", "--no-hf"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "64x128" in out and out.count("dpt_tiny  ") == 2 and "time per token" in out
    with pytest.raises(SystemExit):
        bench_model.main(["--sizes", "100x64"])
    capsys.readouterr()
    # one number, as the node's input_size: said to be no shape there (aspect kept), with the square spelling
    with pytest.raises(SystemExit):
        bench_model.main(["--sizes", "64"])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "argument --sizes: size is the network's HxW (height x width), got '64': give 64x64 for a square input. The "
        "node's and predict's input_size 64 is not one shape: the frame's aspect is kept (resize_method minimal: "
        "input_size 384 runs 640x480 frames at 384x512)")


def test_bench_model_refuses_what_the_model_would_refuse_before_loading_anything(usage_error):
    """--variants, --device and --precision the model refuses: argparse's error naming the option, by the model's own
    checks (they were tracebacks: torch's 'Found no NVIDIA driver' for --device cuda without CUDA, its device-string
    error, get_variant's and parse_precision's ValueError after the environment line)."""
    cuda = f"device 'cuda' requested but CUDA is not available here ({dpt_ros.cuda_missing()}); use --device cpu" \
        if not torch.cuda.is_available() else None
    cases = [(["--variants", "bogus"], "argument --variants: invalid choice: 'bogus'"),
             (["--device", "bogus"], "argument --device: device must be 'auto', 'cpu' or 'cuda[:N]', got 'bogus'"),
             (["--precision", "fp64"], "argument --precision: invalid choice: 'fp64'")]
    if cuda:
        cases.append((["--device", "cuda"], f"argument --device: {cuda}"))
    for argv, why in cases:
        assert usage_error(bench_model.main, ["--sizes", "64x64", *argv], why).out == ""


@pytest.mark.parametrize("argv, why", [
    # (it printed "skip dpt_tiny fp16: fp16 is not supported on the CPU", timed nothing else, exit 0)
    (["--precision", "fp16"], "argument --precision: fp16 is not supported on the CPU (slow or missing kernels); use "
                              "fp32 or bf16"),
    (["--precision", "fp32", "fp16"], "argument --precision: fp16 is not supported on the CPU"),
    # (it timed eager only, as without the option, exit 0)
    (["--cuda-graphs"], "error: --cuda-graphs needs a CUDA device; leave --cuda-graphs out where the model runs on "
                        "the CPU"),
])
def test_bench_model_refuses_fp16_or_cuda_graphs_on_the_cpu_before_loading_anything(argv, why, usage_error):
    """README's 'Bad option values (all tools)': bench_model, as the other tools, refuses --precision fp16 and
    --cuda-graphs where the model runs on the CPU, a usage error."""
    assert usage_error(bench_model.main, ["--device", "cpu", "--variants", "dpt_tiny", "--quick", "--no-hf", *argv],
                       why).out == ""


@pytest.mark.parametrize("argv, why", [
    # (0 was taken as 'not given': 3 timed iterations; a negative count ended with 'no median for empty data')
    (["--iters", "0"], "argument --iters: 0 is no number of timed iterations: give at least 1"),
    (["--iters", "-1"], "argument --iters: -1 is no number of timed iterations: give at least 1"),
    # (a negative one ran none, as 0)
    (["--warmup", "-1"], "argument --warmup: -1 is no number of warm-up iterations: give at least 0"),
    # (0 timed an empty batch, '1.99 ms'; a negative one was torch's 'negative dimension' after the model loaded)
    (["--batch", "0"], "argument --batch: 0 is no number of images per batch: give at least 1"),
    (["--batch", "-1"], "argument --batch: -1 is no number of images per batch: give at least 1"),
    # (torch's 'set_num_threads expects a positive integer', a traceback)
    (["--threads", "-1"], "argument --threads: -1 is no number of threads: give at least 1, or 0 to leave torch's "
                          "own"),
    (["--iters", "2.5"], "argument --iters: '2.5' is not a whole number"),
])
def test_bench_model_refuses_a_count_it_cannot_use_before_loading_anything(argv, why, usage_error):
    assert usage_error(bench_model.main, ["--variants", "dpt_tiny", "--sizes", "64x64", "--no-hf", *argv],
                       why).out == ""


def test_bench_model_refuses_a_json_file_it_cannot_write_before_loading_anything(tmp_path, usage_error):
    """(it was an IsADirectoryError / FileNotFoundError after every variant had been timed, the results lost; a file
    in a folder of the kernel's, as root /dev/b.json, was written there: now refused as the tools' --out is)"""
    try:
        for path, why in ((str(tmp_path), f"argument --json: '{tmp_path}' is a folder; give a file name"),
                          (str(tmp_path / "no" / "b.json"), f"argument --json: {tmp_path / 'no' / 'b.json'}: no folder"),
                          ("/dev/dpt_ros_b.json", "argument --json: /dev/dpt_ros_b.json: /dev is ")):
            assert usage_error(bench_model.main, ["--variants", "dpt_tiny", "--sizes", "64x64", "--no-hf", "--json",
                                                  path], why).out == ""
    finally:
        made = os.path.exists("/dev/dpt_ros_b.json")
        if made:   # (by a bench_model that did not refuse it: not left behind)
            os.unlink("/dev/dpt_ros_b.json")
    assert not made
    assert bench_model.main(["--variants", "dpt_tiny", "--quick", "--iters", "1", "--warmup", "0", "--no-hf",
                             "--json", "-"]) == 0   # ('-': standard output, as before)


@pytest.mark.parametrize("precision", ["half", "float16", "float32", "bfloat16", "FP16", "Bf16"])
def test_bench_model_takes_the_precision_names_the_node_takes(precision, usage_error):
    """--precision: the node's precision names, fp32 fp16 bf16, and no other (bench_model offered the model's aliases
    too, half, float32, ..., which the node's parameter refuses: a figure for a setting the node cannot be given);
    both read the one tuple, dpt_ros.PRECISIONS. Neither takes another case (the node's choices are exact)."""
    import dpt_ros

    assert dpt_ros.PRECISIONS == ("fp32", "fp16", "bf16")
    captured = usage_error(bench_model.main, ["--sizes", "64x64", "--precision", "fp32", precision],
                           f"argument --precision: invalid choice: '{precision}' (choose from")
    assert captured.out == "", captured
    assert "'fp32', 'fp16', 'bf16'" in captured.err.replace("\n", " "), captured.err
    pytest.importorskip("rclpy")
    from dpt_ros.ros import params

    assert params.SPECS["precision"].choices is dpt_ros.PRECISIONS
    assert params._check_value(params.SPECS["precision"], precision) == \
        f"precision={precision!r} is not one of fp32, fp16, bf16"   # what the node says of it
    assert all(params._check_value(params.SPECS["precision"], p) is None for p in dpt_ros.PRECISIONS)


def test_urls_give_height_x_width_and_every_source():
    """Network sizes height x width, as input_size, the node's diagnostics and bench_model write them."""
    lines = weights.urls_text().splitlines()
    row = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert lines[0].split() == ["variant", "task", "net", "HxW", "sha256", "file", "/", "URL"]
    assert row["dpt_hybrid_kitti"].split()[:4] == ["dpt_hybrid_kitti", "depth", "352x1216", "cb926ef4"]
    assert row["dpt_hybrid_nyu"].split()[2] == "480x640"
    assert row["dpt_tiny"].endswith("(no released weights: architecture only)")
    hybrid = lines.index(row["dpt_hybrid"])
    assert lines[hybrid + 1].split() == ["or", "MiDaS", "v3:", VARIANTS["dpt_hybrid"].alt_urls[0]]
    assert lines[hybrid + 2].split() == ["or", "Hugging", "Face:", "https://huggingface.co/Intel/dpt-hybrid-midas"]


def test_verify_report_line_by_line(tiny_file):
    digest = hashlib.sha256(tiny_file.read_bytes()).hexdigest()
    n = len(random_state_dict("dpt_tiny", seed=5))
    lines = weights.verify(tiny_file, "dpt_tiny").splitlines()
    assert lines[0] == f"file: {tiny_file} ({tiny_file.stat().st_size / 2**20:.1f} MiB)"
    assert lines[1:3] == [f"sha256: {digest}", f"hash prefix {digest[:8]}: OK"]
    assert lines[3].startswith(f"tensors: {n}; architecture: ")
    assert lines[4:] == ["matches variant(s): dpt_tiny", f"strict load as dpt_tiny: OK ({n} tensors, official names)"]
    # no variant: the load as the one it matches; a name without a hash: nothing to compare it with
    plain = tiny_file.parent / "plain.pt"
    plain.write_bytes(tiny_file.read_bytes())
    lines = weights.verify(plain, None).splitlines()
    assert lines[2] == "hash prefix: none to check (file name carries none)" and len(lines) == 7
    assert lines[6] == (f"strict load as dpt_tiny (no --variant: the first matching variant that takes it): OK ({n} "
                        "tensors, official names)")
    # its tensors, data.pkl and 5 small records of torch.save's: each compared with the CRC-32 stored with it
    assert lines[3] == f"zip CRC-32s: OK ({n + 6} records hold the bytes torch.save wrote)"


def test_verify_without_a_variant_refuses_what_the_node_refuses(tmp_path, capsys):
    """`weights --verify FILE`, as the loader's errors and README suggest it (no --variant), exited 0 for a file the
    node refuses: a tensor missing, a tensor holding NaN (only --variant ran the strict load). Now the load as the
    variant the architecture matches decides, with the node's words, exit status 1."""
    sd = random_state_dict("dpt_tiny", seed=5)
    missing = dict(sd)
    del missing["pretrained.model.cls_token"]
    nan = dict(sd)
    nan["pretrained.model.cls_token"] = sd["pretrained.model.cls_token"].clone()
    nan["pretrained.model.cls_token"].view(-1)[3] = float("nan")
    for name, state in (("missing.pt", missing), ("nan.pt", nan)):
        torch.save(state, tmp_path / name)
    assert weights.main(["--verify", str(tmp_path / "missing.pt")]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "matches variant(s): dpt_tiny"
    assert err == (f"FAILED: {tmp_path / 'missing.pt'} (variant dpt_tiny) does not match the model:\n"
                   "  1 missing: pretrained.model.cls_token\n")
    assert weights.main(["--verify", str(tmp_path / "nan.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"FAILED: {tmp_path / 'nan.pt'} (variant dpt_tiny): 1 tensor holds NaN or infinite values: "
                          "pretrained.model.cls_token (1 NaN, 0 infinite of 192)"), err
    # a DPT of no variant's architecture (a wider embedding): refused as the node refuses it, not a traceback (the
    # load loop above had no variant to try) nor exit 0 (before the loop, 'matches variant(s): none' passed)
    odd = {k: (torch.zeros(*t.shape[:-1], t.shape[-1] + 8) if k.endswith("pos_embed") else t) for k, t in sd.items()}
    torch.save(odd, tmp_path / "odd.pt")
    assert weights.main(["--verify", str(tmp_path / "odd.pt")]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "matches variant(s): none"
    assert err == (f"FAILED: {tmp_path / 'odd.pt'} is a DPT of none of this package's variants ({', '.join(VARIANTS)}): "
                   "the node refuses it as any of them; --variant NAME says how it differs from NAME\n")
    # the same file whole passes, saying as what it was loaded
    torch.save(sd, tmp_path / "whole.pt")
    assert weights.main(["--verify", str(tmp_path / "whole.pt")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"strict load as dpt_tiny (no --variant: the first matching variant that takes it): OK ({len(sd)} tensors, "
        "official names)")
    # a training wrapper of fp16 tensors: what the load converted is said, so the user knows what was in the file
    torch.save({"state_dict": {"model." + k: v.half() for k, v in sd.items()}, "epoch": 3}, tmp_path / "half.ckpt")
    assert weights.main(["--verify", str(tmp_path / "half.ckpt"), "--variant", "dpt_tiny"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"strict load as dpt_tiny: OK ({len(sd)} tensors, official names; converted on load: taken from "
        f"['state_dict'], prefix 'model.' removed, {len(sd)} float16 tensors cast to float32)")


def test_verify_names_a_damaged_record_of_a_file_whose_name_carries_no_hash(tiny_file, tmp_path, capsys):
    import zipfile

    with zipfile.ZipFile(tiny_file) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(tiny_file.read_bytes())
    head = data[info.header_offset:info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")
    data[start + info.file_size // 2] ^= 0x01   # one bit, in the middle of the largest tensor
    bad = tmp_path / "my_weights.pt"
    bad.write_bytes(bytes(data))
    assert weights.main(["--verify", str(bad), "--variant", "dpt_tiny"]) == 1
    captured = capsys.readouterr()
    assert "hash prefix: none to check (file name carries none)" in captured.out   # (what was checked before)
    assert f"the file is damaged: 1 of its {len(random_state_dict('dpt_tiny', seed=5)) + 6} zip records fails the " \
           f"CRC-32 check" in captured.err and info.filename in captured.err and "strict load" not in captured.out


def test_verify_a_snapshot_in_shards_reports_the_shards(tmp_path, capsys):
    """--verify of a snapshot split into shards gave the index file's own size and SHA-256 (0.0 MiB, a JSON file's
    hash); it gives the shards' total and each shard's size and SHA-256 (what the download page lists)."""
    from safetensors.torch import save_file

    from dpt_ros.model.checkpoint import official_to_hf

    hf = {k: v.contiguous() for k, v in official_to_hf(random_state_dict("dpt_tiny", seed=5)).items()}
    names = list(hf)
    weight_map = {}
    for i, part in enumerate((names[:40], names[40:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: hf[k] for k in part}, str(tmp_path / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    shards = [tmp_path / "model-00001-of-00002.safetensors", tmp_path / "model-00002-of-00002.safetensors"]
    total = sum(p.stat().st_size for p in shards) / 2**20
    assert weights.main(["--verify", str(tmp_path), "--variant", "dpt_tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"file: {index} (the index of 2 shards, {total:.1f} MiB in all)" and total > 1
    assert lines[1:3] == [f"shard: {p.name} ({p.stat().st_size / 2**20:.1f} MiB) sha256: "
                          f"{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in shards]
    assert not any(hashlib.sha256(index.read_bytes()).hexdigest() in line for line in lines)
    assert lines[-1].startswith("strict load as dpt_tiny: OK")
    shards[1].unlink()
    assert weights.main(["--verify", str(index)]) == 1
    assert capsys.readouterr().err == (f"FAILED: {index} names 2 shard files, of which 1 is not in {tmp_path}: "
                                       "model-00002-of-00002.safetensors; download the whole snapshot (every file the "
                                       "index names)\n")   # (it said "of which 1 are not")
    shards[0].unlink()
    assert weights.main(["--verify", str(index)]) == 1
    assert f"names 2 shard files, of which 2 are not in {tmp_path}: model-00001" in capsys.readouterr().err


def test_verify_hash_prefix_of_intact_bytes_under_another_name(tiny_file, tmp_path, capsys):
    """The name's prefix is checked before anything is read: intact bytes under another hash name fail."""
    renamed = tmp_path / "dpt_tiny-00000000.pt"
    renamed.write_bytes(tiny_file.read_bytes())
    assert weights.main(["--verify", str(renamed)]) == 1
    captured = capsys.readouterr()
    digest = hashlib.sha256(renamed.read_bytes()).hexdigest()
    # the loader's own message (the node's, predict's): the digest, the size, where to download, and what a name
    # that only looks like it carries a hash should do
    assert captured.err == (f"FAILED: {renamed}: SHA-256 {digest[:16]}... does not start with 00000000 (from the file "
                            f"name): the file is corrupt or truncated ({renamed.stat().st_size} bytes). Download it "
                            "again (python -m dpt_ros.tools.weights --urls). (A name ending in -<8 or more hex "
                            "digits> carries a torch.hub-style hash prefix; if -00000000 is not one, e.g. a date in "
                            "your own file's name, rename the file.)\n")
    assert captured.out.splitlines()[1].startswith("sha256: ")   # what was checked before the failure


def test_verify_release_and_midas_names_against_the_variant(tiny_file, tmp_path):
    v = VARIANTS["dpt_hybrid"]
    midas = tmp_path / v.alt_checkpoints[0]
    midas.write_bytes(tiny_file.read_bytes())
    lines = []
    with pytest.raises(CheckpointError):   # tiny weights are no DPT-Hybrid
        weights.verify(midas, "dpt_hybrid", lines=lines)
    assert lines[2] == (f"hash: differs from the DPT release file {v.checkpoint} (informational for the MiDaS v3 "
                        f"name {midas.name})")
    assert lines[3].startswith("zip CRC-32s: OK")   # the comparison stands in for "hash prefix: none to check"
    assert lines[4].startswith("tensors: ")
    lines = []   # a name with its own hash prefix: that prefix is checked, no comparison with the release
    with pytest.raises(CheckpointError):
        weights.verify(tiny_file, "dpt_hybrid", lines=lines)
    assert not any(line.startswith("hash:") for line in lines) and lines[2].endswith(": OK")


def test_verify_reports_the_dropped_classifier(tmp_path):
    sd = random_state_dict("dpt_tiny", seed=5)
    sd["pretrained.model.head.weight"] = torch.zeros(1000, 192)
    sd["pretrained.model.head.bias"] = torch.zeros(1000)
    p = tmp_path / "with_head.pt"
    torch.save(sd, p)
    last = weights.verify(p, "dpt_tiny").splitlines()[-1]
    assert last == (f"strict load as dpt_tiny: OK ({len(sd) - 2} tensors, official names, dropped 2 unused "
                    "classifier tensors)")


def test_verify_refuses_a_pipe_and_reads_home_relative_paths(tiny_file, tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    with pytest.raises(SystemExit) as e:   # (nothing to check: a usage error)
        weights.main(["--verify", str(fifo)])
    assert e.value.code == 2 and capsys.readouterr().err.endswith(f" error: --verify: not a regular file: {fifo}\n")
    monkeypatch.setenv("HOME", str(tiny_file.parent))
    assert weights.main(["--verify", f"~/{tiny_file.name}"]) == 0
    assert capsys.readouterr().out.startswith(f"file: {tiny_file} ")


def test_convert_by_destination_suffix_and_needs_a_variant(tiny_file, tmp_path, capsys):
    for name in ("model.bin", "model.pth"):   # anything but .safetensors is a torch file
        assert weights.main(["--convert", str(tiny_file), str(tmp_path / name), "--variant", "dpt_tiny",
                             "--to", "official"]) == 0
        sd = torch.load(tmp_path / name, weights_only=True)
        assert set(sd) == set(random_state_dict("dpt_tiny", seed=5))
    with pytest.raises(SystemExit) as e:
        weights.main(["--convert", str(tiny_file), str(tmp_path / "x.pt")])
    assert e.value.code == 2 and "--convert needs --variant" in capsys.readouterr().err


@pytest.mark.parametrize("with_variant", [False, True], ids=["verify", "verify_as_dpt_tiny"])
def test_a_vit_classifier_is_not_a_dpt(tmp_path, capsys, with_variant):
    """A timm ViT classifier's state dict (blocks.*, head.weight: no DPT decoder) matches no variant and is refused
    in a few lines, with or without --variant (its head.* keys no longer pass for Hugging Face DPT names)."""
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    p = tmp_path / "vit_classifier.pt"
    torch.save(vit.state_dict(), p)
    argv = ["--verify", str(p)] + (["--variant", "dpt_tiny"] if with_variant else [])
    assert weights.main(argv) == 1
    out, err = capsys.readouterr()
    assert "matches variant(s): none" in out
    assert err.startswith(f"FAILED: {p} is not a DPT checkpoint: none of its {len(vit.state_dict())} tensors") and \
        "DPT decoder" in err and len(err) < 600, err
    with pytest.raises(CheckpointError, match="is not a DPT checkpoint"):
        load_engine("dpt_tiny", p)


def test_convert_writes_only_the_tensors_the_source_had(tmp_path):
    """A segmentation file without the auxiliary head and without BatchNorm step counters: the converted file
    lacks them too (the loader's zero-filled aux head and counters were written as if the source had them), so
    --verify of it still says "no auxiliary head"; outputs are unchanged, with either names."""
    v = get_variant("dpt_hybrid_ade20k").replace(
        embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3), channels=(128, 256, 64, 64),
        resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    sd = random_state_dict(v, seed=6)
    lean = {k: t for k, t in sd.items() if not k.startswith("auxlayer.") and not k.endswith(".num_batches_tracked")}
    src = tmp_path / "seg.pt"
    torch.save(lean, src)
    x = torch.randn(1, 3, 64, 64)
    ref = load_engine(v, src).run(x)["logits"]
    for to, name in (("official", "seg_official.pt"), ("hf", "model.safetensors")):
        weights.convert(src, tmp_path / name, v, to)
        out = read_state_dict(tmp_path / name)
        if to == "official":
            assert set(out) == set(lean)
        else:   # (q, k, v are three tensors there)
            assert not any("auxiliary_head" in k or k.endswith("num_batches_tracked") for k in out)
        assert torch.equal(load_engine(v, tmp_path / name).run(x)["logits"], ref)
    rep = load_checkpoint(tmp_path / "seg_official.pt", v).load_report
    assert rep.absent_optional and all(k.startswith("auxlayer.") for k in rep.absent_optional)


def test_verify_says_a_midas_v31_beit_file_is_a_model_it_does_not_run(tmp_path, capsys):
    """weights --verify of a MiDaS v3.1 BEiT DPT (no position embedding, relative position biases) listed 1 missing
    and 26 unexpected keys (as dpt_tiny, whose architecture its other tensors have); it now says what the file is."""
    sd = {k: t for k, t in random_state_dict("dpt_tiny", seed=5).items()
          if k != "pretrained.model.pos_embed" and not k.endswith("attn.qkv.bias")}
    for i in range(12):
        b = f"pretrained.model.blocks.{i}.attn."
        sd.update({b + "q_bias": torch.zeros(192), b + "v_bias": torch.zeros(192),
                   b + "relative_position_bias_table": torch.randn(732, 3)})
    p = tmp_path / "dpt_beit_large_512.pt"
    torch.save(sd, p)
    assert weights.main(["--verify", str(p)]) == 1
    out, err = capsys.readouterr()
    assert "'backbone': 'beit'" in out and out.splitlines()[-1] == "matches variant(s): none"
    assert err.startswith(f"FAILED: {p} is a DPT with a BEiT encoder (MiDaS v3.1 dpt_beit_*.pt") and err.endswith(
        "; python -m dpt_ros.tools.weights --urls lists their files.\n"), err


def test_with_stderr_closed_nothing_meant_for_it_goes_onto_stdout(tmp_path, redirected):
    """weights (and bench_model, as every benchmark) started with stderr closed (2>&-): a usage error's usage and a
    failed --verify's FAILED line went onto stdout (argparse and print write there where sys.stderr is None), among
    the report lines a user reads. Now they go nowhere; the exit statuses stay 2 and 1."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cases = [["dpt_ros.tools.weights", "--verify", tmp_path / "nope.pt"], ["dpt_ros.tools.bench_model", "--iters", "0"],
             ["dpt_ros.tools.weights", "--verify", bad]]
    (usage, none), (bench_usage, bench_none), (failed, report) = (
        redirected([sys.executable, "-m", *argv], "2>&-") for argv in cases)
    assert (usage, none, bench_usage, bench_none) == (2, "", 2, "")
    assert failed == 1 and report.splitlines()[0] == f"file: {bad} (0.0 MiB)" and "FAILED" not in report, report


def test_a_report_on_a_full_disk_is_said_once_with_exit_status_1(tiny_file, redirected):
    """`weights --verify FILE >/dev/full`: the report's print raised OSError, taken for the checkpoint's: "FAILED:
    cannot read FILE: No space left on device", blaming a file that is fine. Now one line says that standard output
    could not be written, exit status 1 (the check itself passed: its 0 would say the user has the report)."""
    code, err = redirected([sys.executable, "-m", "dpt_ros.tools.weights", "--verify", tiny_file], "2>&1 >/dev/full")
    assert (code, err) == (1, "weights: cannot write on standard output: No space left on device; the rest of what it "
                              "prints there is dropped, its work goes on (its other outputs are written; exit status "
                              "1 if nothing else fails)\n")
