"""python -m dpt_ros.tools.predict: image files in, the official output files out (CPU, small random models
saved as checkpoint files, so the real loader runs)."""
from __future__ import annotations

import errno
import os
import pwd
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import torch

import dpt_ros
from dpt_ros import pipeline
from dpt_ros.model import load_engine
from dpt_ros.model.reference import random_state_dict
from dpt_ros.ros.testing import (CTRL_C_DURING_IMPORT, as_nobody, can_mount_tmpfs, concurrently, console_script,
                                 pattern_image, wait_for, with_own_dev_shm)
from dpt_ros.tools import predict


def _read_pfm(path) -> np.ndarray:
    """PFM as the format defines it: 'Pf' (one channel), 'W H', a scale whose sign is the byte order
    (negative: little-endian), then float rows from the bottom up."""
    raw = path.read_bytes()
    lines = raw.split(b"\n", 3)
    assert lines[0] == b"Pf"
    w, h = (int(v) for v in lines[1].split())
    scale = float(lines[2])
    values = np.frombuffer(lines[3], "<f4" if scale < 0 else ">f4", count=w * h).reshape(h, w)
    return np.flipud(values)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    torch.save(random_state_dict("dpt_tiny", seed=3), d / "tiny.pt")
    images = d / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), pattern_image(96, 64, seed=1)[..., ::-1])
    cv2.imwrite(str(images / "b.jpg"), pattern_image(50, 70, seed=2)[..., ::-1])
    (images / "notes.txt").write_text("not an image")
    return d


def test_a_missing_weights_file_of_a_variant_without_releases_says_the_option_that_runs_random_weights(files, capsys):
    """--weights naming no file, for dpt_tiny (no released weights): the refusal said "use weights='random'",
    load_engine's argument, not predict's option; it says --weights random, which runs."""
    missing = files / "nope.pt"
    out = files / "out_missing"
    assert predict.main([str(files / "images"), "--variant", "dpt_tiny", "--weights", str(missing),
                         "--input-size", "64", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"predict: cannot load dpt_tiny from {missing}: weights file not found: {missing}. Variant dpt_tiny has no "
        "released weights; for tests give random as the weights (predict --weights random, the node's "
        "depth.weights:=random; outputs are meaningless) or pick a released variant.\n")
    assert not out.exists()
    assert predict.main([str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", "random",
                         "--input-size", "64", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"]


def test_depth_files_are_the_models_output_as_the_official_script_writes_them(files, capsys):
    out = files / "out_depth"
    assert predict.main([str(files / "images"), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
                         "--input-size", "64", "--out", str(out)]) == 0
    engine = load_engine("dpt_tiny", str(files / "tiny.pt"))
    pre = pipeline.Preprocessor((64, 64))
    for name in ("a", "b"):
        rgb = cv2.cvtColor(cv2.imread(str(next((files / "images").glob(name + ".*")))), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        want = pipeline.upsample(engine.run(pre(rgb))["inverse_depth"], (h, w))[0].numpy()
        got = _read_pfm(out / f"{name}.pfm")
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        png = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (h, w)
        stretched = (65535.0 * (want - want.min()) / (want.max() - want.min())).astype(np.uint16)
        assert np.abs(png.astype(int) - stretched.astype(int)).max() <= 1   # float32 vs float64 at a truncation
        assert png.min() == 0 and png.max() == 65535
        colored = cv2.imread(str(out / f"{name}_colored.png"))
        assert colored.shape == (h, w, 3)
    printed = capsys.readouterr().out
    assert "a.png: 96x64 (WxH), network 64x96 (HxW)" in printed   # each size with its order
    assert "notes.txt" not in printed   # a folder's files that are not images are passed over


def test_metric_variant_files_follow_the_official_scale(files):
    torch.save(random_state_dict("dpt_hybrid_nyu", seed=4), files / "nyu.pt")
    image = files / "images" / "a.png"
    for flag, folder in (([], "out_nyu"), (["--absolute-depth"], "out_nyu_abs")):
        assert predict.main([str(image), "--variant", "dpt_hybrid_nyu", "--weights", str(files / "nyu.pt"),
                             "--input-size", "64", "--out", str(files / folder), *flag]) == 0
    engine = load_engine("dpt_hybrid_nyu", str(files / "nyu.pt"))
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    metres = pipeline.upsample(engine.run(pipeline.Preprocessor((64, 64))(rgb))["depth"], (64, 96))[0].numpy()
    np.testing.assert_allclose(_read_pfm(files / "out_nyu" / "a.pfm"), metres * 1000.0, rtol=1e-5)
    assert cv2.imread(str(files / "out_nyu" / "a.png"), cv2.IMREAD_UNCHANGED).max() == 65535
    mm = cv2.imread(str(files / "out_nyu_abs" / "a.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mm, np.clip(metres * np.float32(1000.0), 0, 65535).astype(np.uint16))


def test_segmentation_files_are_labels_and_the_official_overlay(files):
    torch.save(random_state_dict("dpt_hybrid_ade20k", seed=5), files / "ade.pt")
    image = files / "images" / "a.png"
    assert predict.main([str(image), "--variant", "dpt_hybrid_ade20k", "--weights", str(files / "ade.pt"),
                         "--input-size", "64", "--out", str(files / "out_seg")]) == 0
    engine = load_engine("dpt_hybrid_ade20k", str(files / "ade.pt"))
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    logits = engine.run(pipeline.Preprocessor((64, 64))(rgb))["logits"]
    labels = pipeline.labels_from_logits(pipeline.upsample(logits, (64, 96)))[0].numpy()
    np.testing.assert_array_equal(cv2.imread(str(files / "out_seg" / "a_labels.png"), cv2.IMREAD_UNCHANGED), labels)
    blend = cv2.cvtColor(cv2.imread(str(files / "out_seg" / "a.png")), cv2.COLOR_BGR2RGB)
    palette = pipeline.ADE20K_PALETTE[labels].astype(np.float64)
    np.testing.assert_allclose(blend, 0.5 * rgb + 0.5 * palette, atol=1.0)


def test_unreadable_images_are_named_and_the_rest_processed(files, capfd, tmp_path):
    out = files / "out_mixed"
    (tmp_path / "empty.png").write_bytes(b"")
    code = predict.main([str(files / "images" / "notes.txt"), str(files / "images" / "a.png"),
                         str(files / "missing.png"), str(tmp_path / "empty.png"), str(tmp_path / ("l" * 300 + ".png")),
                         "--variant", "dpt_tiny",
                         "--weights", str(files / "tiny.pt"), "--input-size", "64", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 1 and (out / "a.pfm").exists()
    # each with the reader's reason (was: "not readable as an image (missing, or not one of png, ...)" for all)
    assert "notes.txt: not readable as an image: OpenCV cannot decode it: corrupt or truncated, or not an image" in err
    assert "missing.png: not readable as an image: no such file; skipped" in err
    assert "empty.png: not readable as an image: the file is empty (0 bytes); skipped" in err
    # a name longer than the file system takes (was: an OSError traceback from looking whether it is a folder)
    assert "l.png: not readable as an image: cannot look at it: File name too long; skipped" in err
    assert "findDecoder" not in err   # (OpenCV's own warning for the missing file is not printed as well)


@pytest.mark.parametrize("failing", ["open", "reader"])
@pytest.mark.parametrize("error", [errno.EACCES, errno.EIO])
def test_an_image_of_a_listed_folder_that_cannot_be_read_is_named_with_why_and_what_to_do(files, capfd, tmp_path,
                                                                                        monkeypatch, failing, error):
    """A folder that can be listed, one of whose images cannot be read: no permission to read it (EACCES; as root it
    cannot be provoked, so the read's open is made to raise: one failure injected), or a read error of the disk
    (EIO). It was 'not readable as an image: cannot open it: Permission denied', with nothing of what to do; and an
    OSError from the reader that the reader did not say as its own ('reader': the reader itself made to raise it)
    ended predict with a traceback, the images after it not run. Now one line names the file, why (for no permission
    its owner and mode and the user predict runs as) and what to do; the other image is run, exit status 1 ('some
    could not be read')."""
    import shutil
    import stat as stat_module

    from dpt_ros.pipeline import encodings

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(files / "images" / "a.png", folder / "a.png")
    shutil.copy(files / "images" / "b.jpg", folder / "b.jpg")
    denied = folder / "b.jpg"

    def refused():
        return OSError(error, os.strerror(error), str(denied))   # (PermissionError for EACCES: OSError picks it)

    if failing == "open":
        real_open = open

        def opening(path, *args, **kwargs):
            if os.fspath(path) == str(denied):
                raise refused()
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(encodings, "open", opening, raising=False)
    else:
        real_read = pipeline.read_image_file

        def reading(path):
            if os.fspath(path) == str(denied):
                raise refused()
            return real_read(path)

        monkeypatch.setattr(pipeline, "read_image_file", reading)
    out = tmp_path / "out"
    code = predict.main([str(folder), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
                         "--input-size", "64", "--out", str(out)])
    err = capfd.readouterr().err
    why = ("cannot open it: " if failing == "open" else "cannot read it: ") + os.strerror(error)
    if error == errno.EACCES:
        st = denied.stat()
        what = (f" (owner {pwd.getpwuid(st.st_uid).pw_name}, {stat_module.filemode(st.st_mode)}; predict runs as "
                f"{pwd.getpwuid(os.geteuid()).pw_name}): give this user read permission on it (chmod, chown), or leave "
                "it out")
    else:
        what = " (the disk or file system failed to read it): copy it from a good copy, or leave it out"
    assert err.splitlines() == [f"predict: {folder}/b.jpg: not readable as an image: {why}{what}; skipped"], err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"]


def test_no_images_to_run_is_said_before_the_model_loads(files, capsys, tmp_path):
    """A folder without images, or only names that are no file or folder (a typo: photo/ for photos/), is a usage
    error said before the model loads (a large model on a CPU: half a minute, then 'no images found' or, for a
    typo, 'not readable as an image: no such file; skipped' and exit status 1 as if some images had run). Weights
    that cannot load show the order: the images' reason comes, not the weights'."""
    (tmp_path / "empty").mkdir()
    common = ["--variant", "dpt_tiny", "--weights", "/nowhere/dpt_tiny.pt", "--out", str(tmp_path / "out")]
    assert predict.main([str(tmp_path / "empty"), *common]) == 2
    assert capsys.readouterr().err == f"predict: no images found in {tmp_path / 'empty'}\n"
    missing = [str(tmp_path / "photo") + "/", str(tmp_path / "b.png")]
    assert predict.main([*missing, *common]) == 2
    assert capsys.readouterr().err == (f"predict: no file or folder {missing[0]!r}, {missing[1]!r} (a typo, or another "
                                       "working folder?): give image files or folders of images; nothing was run\n")
    # with weights that load, too: none run is exit status 2, and nothing is made
    assert predict.main([*missing, *common[:3], "random", *common[4:]]) == 2
    assert "no file or folder" in capsys.readouterr().err and not (tmp_path / "out").exists()
    # one missing among images that run is still skipped (exit status 1), as before
    assert predict.main([missing[1], str(files / "images" / "a.png"), *common[:3], str(files / "tiny.pt"),
                         "--input-size", "64", "--out", str(tmp_path / "out")]) == 1
    assert "b.png: not readable as an image: no such file; skipped" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_made_is_said_before_the_model_loads(files, capsys, tmp_path):
    """--out under a file (or the kernel's, or a name too long) was found out only after the model had loaded
    (seconds, or a minute for a large one on a CPU); it is said first: weights that cannot load show the order. The
    folders made for a good --out are removed again where the weights then fail to load."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    common = [str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", "/nowhere/dpt_tiny.pt"]
    assert predict.main([*common, "--out", str(blocker / "sub")]) == 2
    assert capsys.readouterr().err == (f"predict: cannot create the output folder {blocker / 'sub'}: {blocker} is a "
                                       "file, so no folder can be made under it; give --out a path that is not under a file\n")
    out = tmp_path / "new" / "out"
    assert predict.main([*common, "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("predict: cannot load dpt_tiny from /nowhere/dpt_tiny.pt: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_each_line_names_an_input_as_it_was_given(files, capfd, tmp_path, monkeypatch):
    """A name given is said as given: a missing folder given as photo/ (beside images that run) was 'predict: photo:
    not readable as an image: no such file; skipped' and ./images/a.png was 'images/a.png' (Path drops the slash and
    the ./), a name the user did not write. A folder's images are its name as given joined with theirs."""
    monkeypatch.chdir(files)
    out = tmp_path / "out"
    assert predict.main(["photo/", "./images/a.png", "images/", "--variant", "dpt_tiny", "--weights", "tiny.pt",
                         "--input-size", "64", "--out", str(out)]) == 1
    captured = capfd.readouterr()
    assert captured.err.splitlines() == ["predict: photo/: not readable as an image: no such file; skipped"]
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["./images/a.png", "images/a.png",
                                                                          "images/b.jpg"]


def test_a_folder_without_images_beside_images_is_said_and_skipped(files, capfd, tmp_path):
    """A folder without images given beside images was passed over without a word (exit status 0, as if all had run):
    it is said, with what it holds (its subfolders are not looked in), before the model loads, and skipped (exit
    status 1). Beside only names that are no file or folder, the folder is said as a folder, not as one of them."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "list.txt").write_text("not an image")
    (tmp_path / "notes" / "day1").mkdir()
    cv2.imwrite(str(tmp_path / "notes" / "day1" / "deep.png"), pattern_image(32, 32, seed=7)[..., ::-1])
    out = tmp_path / "out"
    common = ["--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"), "--input-size", "64", "--out", str(out)]
    code = predict.main([str(tmp_path / "empty"), str(tmp_path / "notes"), str(files / "images" / "b.jpg"), *common])
    captured = capfd.readouterr()
    assert code == 1, captured.err
    assert captured.err.splitlines() == [
        f"predict: {tmp_path / 'empty'}: no images in this folder; skipped",
        f"predict: {tmp_path / 'notes'}: no images in this folder (its one file has no image's extension: png, jpg, "
        "jpeg, bmp, tif, tiff, webp, ppm, pgm; its one subfolder is not looked in); skipped"]
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [str(files / "images" / "b.jpg")]
    assert sorted(f.name for f in out.iterdir()) == ["b.pfm", "b.png", "b_colored.png"]
    # beside a missing name only: nothing run, each said as what it is (it was "no file or folder" for both)
    missing = str(tmp_path / "missing.png")
    assert predict.main([str(tmp_path / "notes"), missing, *common[:3], "/nowhere/dpt_tiny.pt", *common[4:]]) == 2
    assert capfd.readouterr().err.splitlines() == [
        f"predict: no images found in {tmp_path / 'notes'} (its one file has no image's extension: png, jpg, jpeg, "
        "bmp, tif, tiff, webp, ppm, pgm; its one subfolder is not looked in)",
        f"predict: no file or folder {missing!r} (a typo, or another working folder?): give image files or folders of "
        "images; nothing was run"]


def test_a_file_given_as_a_folder_is_refused_and_a_folder_named_as_an_image_is_a_folder(files, capfd, tmp_path):
    """A file given as a folder's name, a.png/ or a.png/. (the system: 'Not a directory'; Path drops the slash), was
    read as the file; it is said, with the name to give, before the model loads, and skipped (exit status 1), or, given
    alone, nothing is run (exit status 2). A subfolder named sub.png of a folder given was taken for an image ('not a
    regular file'; skipped, exit status 1): it is a subfolder, not looked in; a folder x.png given is a folder."""
    shots = tmp_path / "shots"
    (shots / "sub.png").mkdir(parents=True)
    cv2.imwrite(str(shots / "sub.png" / "deep.png"), pattern_image(32, 32, seed=7)[..., ::-1])
    cv2.imwrite(str(shots / "c.png"), pattern_image(32, 32, seed=8)[..., ::-1])
    (tmp_path / "x.png").mkdir()
    cv2.imwrite(str(tmp_path / "x.png" / "d.png"), pattern_image(32, 32, seed=9)[..., ::-1])
    a = str(files / "images" / "a.png")
    out = tmp_path / "out"
    common = ["--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"), "--input-size", "64", "--out", str(out)]
    assert predict.main([str(shots), str(tmp_path / "x.png"), *common]) == 0
    captured = capfd.readouterr()
    assert captured.err == "" and [line.split(":")[0] for line in captured.out.splitlines()] == [
        str(shots / "c.png"), str(tmp_path / "x.png" / "d.png")]
    assert predict.main([a + "/", a + "/.", str(files / "images" / "b.jpg"), *common]) == 1
    captured = capfd.readouterr()
    assert captured.err.splitlines() == [
        f"predict: {a}/: not a folder: {a} is a file (a name ending in / or /. is a folder's); give it as {a}; skipped",
        f"predict: {a}/.: not a folder: {a} is a file (a name ending in / or /. is a folder's); give it as {a}; skipped"]
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [str(files / "images" / "b.jpg")]
    assert "a.pfm" not in os.listdir(out)
    # alone: said before the model loads (weights that are not there are not reached), exit status 2
    assert predict.main([a + "/", *common[:3], "/nowhere/dpt_tiny.pt", *common[4:]]) == 2
    assert capfd.readouterr().err == (f"predict: {a}/: not a folder: {a} is a file (a name ending in / or /. is a "
                                      f"folder's); give it as {a}\n")


@pytest.mark.parametrize("args,message", [
    (["--weights", "/nowhere/dpt_tiny.pt"], "cannot load dpt_tiny from /nowhere/dpt_tiny.pt"),
    # the node's input_size range (100000 was an 84 GiB allocation and a traceback; -32 was "a multiple of 32"), with
    # the allowed sizes nearest to the one given, as the node and the other tools say them (it said only the range)
    *((["--weights", "random", "--input-size", size], f"predict: --input-size {size} {why}\n") for size, why in (
        ("100", "is not a multiple of 32: use 96 or 128 (allowed: 0..2048 in steps of 32), as the node's input_size; "
                "0 is the variant's own size, 128x128 (height x width)"),
        ("50", "is not a multiple of 32: use 32 or 64 (allowed: 0..2048 in steps of 32), as the node's input_size; "
               "0 is the variant's own size, 128x128 (height x width)"),
        ("16", "is not a multiple of 32: use 32, or 0 for the variant's own size, 128x128 (height x width) (allowed: "
               "0..2048 in steps of 32), as the node's input_size"),
        ("100000", "out of range 0..2048 in steps of 32: use 2048, as the node's input_size; 0 is the variant's own "
                   "size, 128x128 (height x width)"),
        ("2080", "out of range 0..2048 in steps of 32: use 2048, as the node's input_size; 0 is the variant's own "
                 "size, 128x128 (height x width)"),
        ("-32", "out of range 0..2048 in steps of 32: use 32, or 0 for the variant's own size, 128x128 (height x "
                "width), as the node's input_size"))),
    (["--weights", "random", "--absolute-depth"], "--absolute-depth is for the metric variants"),
    # the device or precision is said to be the problem, not the weights file (which is not read at all)
    (["--weights", "/nowhere/dpt_tiny.pt", "--device", "gpu"], "predict: device must be 'auto', 'cpu' or 'cuda[:N]', got 'gpu'"),
    (["--weights", "/nowhere/dpt_tiny.pt", "--device", "cpu", "--precision", "fp16"],
     "predict: fp16 is not supported on the CPU (slow or missing kernels); use fp32 or bf16"),
])
def test_usage_errors_exit_2_with_the_reason(files, capsys, args, message):
    assert predict.main([str(files / "images"), "--variant", "dpt_tiny", "--out", str(files / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and ("cannot load" in err) == ("cannot load" in message), err


def test_an_empty_out_or_image_path_is_a_usage_error_not_the_working_folder(files, tmp_path, monkeypatch, usage_error):
    """``--out ""`` (an unset shell variable) wrote the results into the working folder, and an image path ""
    read the working folder's images (Path('') is '.'); both are refused, saying what to give, and nothing is
    written. ``.`` says the working folder."""
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("here.png", pattern_image(32, 32, seed=4)[..., ::-1])
    common = ["--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"), "--input-size", "64"]
    usage_error(predict.main, [str(files / "images" / "a.png"), "--out", "", *common],
                "argument --out: no folder given (an empty path); give the folder to write into (made if it does not "
                "exist), or . for the working folder")
    usage_error(predict.main, ["", "--out", "out", *common],
                "argument images: no file or folder given (an empty path); give an image file or a folder of images, "
                "or . for the working folder")
    assert sorted(os.listdir(tmp_path)) == ["here.png"]
    assert predict.main([".", "--out", "out", *common]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["here.pfm", "here.png", "here_colored.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_where_there_is_none_names_the_option_to_use(files, capsys):
    """The command line's user is told its own option (--device cpu), not the library's device='cpu', and why there
    is no CUDA, as the node and the demo say it (it said only "not available here")."""
    assert predict.main([str(files / "images"), "--variant", "dpt_tiny", "--out", str(files / "x"),
                         "--weights", "random", "--device", "cuda"]) == 2
    assert capsys.readouterr().err == ("predict: device 'cuda' requested but CUDA is not available here "
                                       f"({dpt_ros.cuda_missing()}); use --device cpu\n")


def test_device_is_the_nodes_auto_by_default(files, capsys, monkeypatch):
    """--device takes the node's values, auto (the default) included: the GPU where there is one, as for the node and
    the demo. predict ran on the CPU unless told --device cuda and refused auto ("device must be 'cpu' or
    'cuda[:N]', got 'auto'"): a GPU machine's user of the README's command waited for the CPU's figures."""
    import dpt_ros

    with pytest.raises(SystemExit) as info:
        predict.main(["--help"])
    assert info.value.code == 0
    assert "auto (the default: CUDA where there is one, as for the node), cpu, cuda, cuda:N" in " ".join(
        capsys.readouterr().out.split())
    assert predict.parse_args(["x.png", "--variant", "dpt_tiny", "--weights", "random", "--out", "o"]).device == "auto"
    monkeypatch.setattr(dpt_ros, "cuda_available", lambda: False)   # (auto here: the CPU)
    img, out = files / "images" / "a.png", files / "out_auto"
    for given in ([], ["--device", "auto"]):
        assert predict.main([str(img), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
                             "--input-size", "64", "--out", str(out), *given]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"]


def test_help_says_the_default_of_every_option_that_has_one(capsys):
    """--help gave --precision and --resize-method no words, so not their defaults (fp32, minimal); each is said,
    and is the node's parameter's default."""
    from dpt_ros.ros.params import PARAMETERS

    with pytest.raises(SystemExit) as info:
        predict.main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--precision {fp32,fp16,bf16} fp32 (the default, as the node's precision); bf16; fp16 on CUDA only" in text
    assert ("--resize-method {minimal,lower_bound,upper_bound,fixed} how the image is scaled to the network size, "
            "DPT's keep-aspect rules (default minimal, as the node's resize_method)") in text
    defaults = vars(predict.parse_args(["x.png", "--variant", "dpt_tiny", "--weights", "random", "--out", "o"]))
    for name in ("precision", "resize_method", "device", "input_size"):
        assert defaults[name] == next(p.default for p in PARAMETERS if p.name == name), name


def test_input_size_range_is_the_nodes():
    from dpt_ros.ros.params import PARAMETERS

    assert predict.INPUT_SIZE_RANGE == next(p.int_range for p in PARAMETERS if p.name == "input_size")


def test_an_input_size_is_refused_without_ros_with_the_sizes_the_node_names():
    """predict runs without ROS; its refusal of an --input-size names the allowed sizes nearest to it, the ones the
    node and the tools that take the node's parameter name (one rule, dpt_ros.int_range_refusal): it said only the
    range ("--input-size must be 0..2048 in steps of 32 ...; got 100")."""
    from dpt_ros.ros import params

    code = ("import sys; sys.modules['rclpy'] = None; sys.modules['rcl_interfaces'] = None\n"
            "from dpt_ros.tools import predict\n"
            "sys.exit(predict.main(['x.png', '--variant', 'dpt_tiny', '--weights', 'random', '--out', 'o', "
            "'--input-size', '100']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("predict: --input-size 100 is not a multiple of 32: use 96 or "
                                                     "128 (allowed: 0..2048 in steps of 32)"), p.stderr[-2000:]
    for size in (100, 16, 4096, -1):
        option = params.range_refusal(params.SPECS["input_size"], size, "--input-size")
        assert option == f"{size} " + dpt_ros.int_range_refusal(size, predict.INPUT_SIZE_RANGE,
                                                                zero="the variant's own size"), size


def _full_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) whose buffer is full: a process writing into it waits there until it is read."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    for size in (4096, 1):
        try:
            while True:
                os.write(write_end, b"x" * size)
        except BlockingIOError:
            pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def _writing_stderr(pid: int) -> bool:
    """Whether process ``pid`` waits in a write(2) to its stderr (x86-64's write is system call 1, AArch64's 64)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in ("1", "64") and fields[1] == "0x2"


def _drained(read_end: int) -> bytes:
    """All that comes from ``read_end`` until its writers are gone."""
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    return data


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/syscall"), reason="needs Linux's /proc/PID/syscall")
def test_a_run_whose_weights_fail_leaves_the_new_out_folder_another_run_uses(files, tmp_path):
    """Two predicts into one new --out folder: run B made it, then its weights failed to load; run A had found it
    there meanwhile and was loading its model. B removed the folder (empty: A had written nothing yet), and then
    every image of A failed, 'the output folder ... is no longer there'. A run now removes the folders it made only
    while no other predict uses them (each holds a lock on its --out) and only while empty (rmdir); a folder
    another run made is never its to remove. Each run is held where it writes its first line on stderr (a pipe whose
    buffer is full): B after making the folder and failing to load, before its clean-up; A after its model loaded,
    before its images."""
    out = tmp_path / "shared"
    image = str(files / "images" / "a.png")
    argv = [sys.executable, "-m", "dpt_ros.tools.predict", image, "--variant", "dpt_tiny", "--input-size", "64",
            "--out", str(out), "--weights"]
    b_read, b_write = _full_pipe()
    a_read, a_write = _full_pipe()
    b = a = None
    try:
        b = subprocess.Popen([*argv, "/nowhere/dpt_tiny.pt"], stdout=subprocess.DEVNULL, stderr=b_write)
        os.close(b_write)
        wait_for(lambda: _writing_stderr(b.pid), timeout=120, what="run B's first line on stderr")
        assert out.is_dir() and list(out.iterdir()) == []   # (B made it, then failed to load)
        a = subprocess.Popen([*argv, "random"], stdout=subprocess.PIPE, stderr=a_write)
        os.close(a_write)
        wait_for(lambda: _writing_stderr(a.pid), timeout=120, what="run A's first line on stderr")
        b_err = _drained(b_read).lstrip(b"x").decode()
        assert b.wait(timeout=60) == 2, b_err
        assert b_err.startswith("predict: cannot load dpt_tiny from /nowhere/dpt_tiny.pt: "), b_err
        assert out.is_dir()   # (was: removed by B)
        a_err = _drained(a_read).lstrip(b"x").decode()
        a_out = a.stdout.read().decode()
        assert a.wait(timeout=60) == 0, a_err
        assert "RANDOM WEIGHTS" in a_err.splitlines()[2], a_err   # (A was held at its banner, its first line)
        assert a_out.startswith(f"{image}: 96x64 (WxH)"), a_out
        assert sorted(p.name for p in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"]
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for fd in (a_read, b_read):
            os.close(fd)


def test_a_run_whose_weights_fail_removes_only_the_empty_folders_it_made(files, tmp_path):
    """The folders made for --out are removed again where the weights fail to load, with os.rmdir: a folder that
    was there already, or that holds a file (another run's, written meanwhile), stays with what is in it."""
    common = [str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", "/nowhere/dpt_tiny.pt"]
    (tmp_path / "there").mkdir()
    assert predict.main([*common, "--out", str(tmp_path / "there" / "new" / "out")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"] and list((tmp_path / "there").iterdir()) == []
    made, held = predict.make_output_folder(tmp_path / "there" / "new" / "out")
    try:
        assert made == [tmp_path / "there" / "new" / "out", tmp_path / "there" / "new"]
        (tmp_path / "there" / "new" / "out" / "a.png").write_bytes(b"another run's")
    finally:
        predict.remove_made_folders(made, held)
        os.close(held)
    assert (tmp_path / "there" / "new" / "out" / "a.png").read_bytes() == b"another run's"
    assert predict.make_output_folder(tmp_path / "there" / "new" / "out")[0] == []


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root (a child becomes user nobody)")
def test_an_out_folder_that_may_be_written_in_but_not_read_is_used_unlocked():
    """--out a folder its user may write in but not read (mode 0333): its lock cannot be taken (open for reading is
    refused), and it is used unlocked, as before locks were taken, not refused as a folder that cannot be made."""
    import shutil
    import tempfile
    from pathlib import Path

    top = Path(tempfile.mkdtemp(prefix="dpt_ros_predict_out_"))   # (not tmp_path: root's 0700 folders above it)
    os.chmod(top, 0o755)
    folder = top / "write_only"
    folder.mkdir()
    folder.chmod(0o333)
    try:
        assert as_nobody(lambda: int(predict.make_output_folder(folder) != ([], None))) == 0
    finally:
        shutil.rmtree(top)


def test_ctrl_c_is_one_line_and_130(files, tmp_path):
    """SIGINT while images are being processed: one line, exit 130 (was: a torch traceback ending in
    KeyboardInterrupt)."""
    # (SIGINT's default handler set explicitly: a suite started in the background by a shell inherits SIGINT ignored;
    # then the module runs as `python -m` runs it)
    code = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "runpy.run_module('dpt_ros.tools.predict', run_name='__main__', alter_sys=True)")
    image = str(files / "images" / "a.png")
    # (stderr into a file, not a pipe: a pipe nothing reads while this side waits for stdout's first line fills at
    # 64 KiB, and then the tool waits on its write and this side on its line, forever)
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", code, *[image] * 500, "--variant", "dpt_tiny",
                                 "--weights", str(files / "tiny.pt"), "--input-size", "256",
                                 "--out", str(tmp_path / "out")],
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        first = proc.stdout.readline()   # the first image done: the model loaded and running
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = (tmp_path / "stderr").read_text()
    assert first.startswith(f"{image}: 96x64 (WxH)"), (first, err[-2000:])
    assert proc.returncode == 130 and err == "predict: interrupted\n", (proc.returncode, err[-2000:])


def test_ctrl_c_while_an_image_is_written_leaves_none_of_its_files(files, tmp_path, monkeypatch):
    """SIGINT while an image's files are being written (a real signal, sent as OpenCV writes b's last file): the
    images done before keep their files, the interrupted one leaves none, neither whole nor truncated nor temporary
    (was: b.pfm and b.png, half of b's set, beside a's)."""
    real_imwrite = cv2.imwrite

    def imwrite_interrupted_at_b_colored(path, values):
        if path.endswith("b_colored.png"):
            os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C, acted on at the next bytecode: before this file is written
        return real_imwrite(path, values)

    monkeypatch.setattr(predict.cv2, "imwrite", imwrite_interrupted_at_b_colored)
    out = tmp_path / "out"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal
    try:
        code = predict.main([str(files / "images"), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
                             "--input-size", "64", "--out", str(out)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    assert sorted(f.name for f in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"]
    assert _read_pfm(out / "a.pfm").shape == (64, 96)


# a predict writing an image's set (the real write_outputs) that stops once all three files are written, before the
# renames: where SIGKILL finds it
_STALLED_WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from dpt_ros.tools import predict
real = predict.cv2.imwrite
def stall(path, values):
    ok = real(path, values)
    if path.endswith("_colored.png"):
        print("written", flush=True)
        time.sleep(600)
    return ok
predict.cv2.imwrite = stall
inv = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
predict.write_outputs(Path(sys.argv[1]), "k", "dpt_tiny", np.zeros((8, 8, 3), np.uint8), {"inverse_depth": inv})
"""


def test_a_killed_runs_temporaries_are_removed_by_the_next_run_into_the_folder(files, tmp_path, capsys):
    """SIGKILL (or a power cut) while an image's set is written leaves its temporaries (.partial-<pid>-<file>), which
    no rename or cleanup will ever touch (were left forever): the next run into the folder removes them and says so;
    an earlier version's temporary (no pid, no lock) only once an hour old; other files stay."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "written\n"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    left = sorted(f.name for f in out.iterdir())   # (.partial-<its pid>-k.pfm, ...)
    assert [n.startswith(".partial-") and n.endswith(("-k.pfm", "-k.png", "-k_colored.png")) for n in left] == [True] * 3
    for name, age_s in ((".partial-old.png", 7200), (".partial-young.png", 60), (".partial-notes.txt", 7200),
                        ("k.png", 7200)):
        (out / name).write_bytes(b"x")
        os.utime(out / name, (time.time() - age_s,) * 2)
    assert predict.main([str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights",
                         str(files / "tiny.pt"), "--input-size", "64", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"predict: removed 4 temporary file(s) (.partial-*) that a run killed while writing left in {out}" in err
    assert sorted(f.name for f in out.iterdir()) == [".partial-notes.txt", ".partial-young.png", "a.pfm", "a.png",
                                                     "a_colored.png", "k.png"]
    # nothing stale: nothing said
    assert predict.main([str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights",
                         str(files / "tiny.pt"), "--input-size", "64", "--out", str(out)]) == 0
    assert "removed" not in capsys.readouterr().err


def test_a_running_predicts_temporaries_are_never_removed(files, tmp_path, monkeypatch):
    """A second predict starting in the folder while the first writes an image's set (its cleanup run from inside the
    first one's last write): the first one's temporaries are held (locked), kept, and its set completes."""
    real_imwrite = cv2.imwrite
    seen = []

    def imwrite_while_another_predict_starts(path, values):
        ok = real_imwrite(path, values)
        if path.endswith("b_colored.png"):
            seen.append((predict.remove_stale_partials(out), sorted(f.name for f in out.iterdir())))
        return ok

    monkeypatch.setattr(predict.cv2, "imwrite", imwrite_while_another_predict_starts)
    out = tmp_path / "out"
    assert predict.main([str(files / "images"), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
                         "--input-size", "64", "--out", str(out)]) == 0
    pid = os.getpid()
    assert seen == [((0, 3), [*(f".partial-{pid}-b{s}" for s in (".pfm", ".png", "_colored.png")),
                              "a.pfm", "a.png", "a_colored.png"])]
    assert sorted(f.name for f in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png", "b.pfm", "b.png",
                                                     "b_colored.png"]


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux's /proc/locks to see a lock waited for")
def test_a_temporary_of_the_same_name_being_written_is_not_emptied(tmp_path):
    """Two predicts (or --convert runs) of the same pid, each in a pid namespace of its own (two containers' pid 1)
    sharing the output folder, name their temporaries for one image alike: the second's create_locked emptied the
    first's file before waiting for its lock, under the first's writes, and the set renamed into place was empty
    (zeros where --convert's checkpoint began). It now waits for the lock first: the first's file is renamed whole,
    and the second gets a new, empty one."""
    from dpt_ros.tools import create_locked

    temporary, final = tmp_path / ".partial-1-a.png", tmp_path / "a.png"
    first = create_locked(temporary)
    os.write(first, b"the first one's image")
    got = []
    second = threading.Thread(target=lambda: got.append(create_locked(temporary)))
    second.start()
    try:
        inode = f":{os.stat(temporary).st_ino} "
        wait_for(lambda: any("->" in line and inode in line for line in open("/proc/locks")),
                 what="the second create_locked waiting for the lock")
        os.rename(temporary, final)
    finally:
        os.close(first)
        second.join(timeout=30)
    try:
        assert final.read_bytes() == b"the first one's image"
        assert temporary.read_bytes() == b"" and os.path.samestat(os.fstat(got[0]), os.stat(temporary))
    finally:
        for fd in got:
            os.close(fd)


def _predict_into_a_folder_with_a_stale_temporary(files, tmp_path):
    """predict (dpt_tiny) run on images/a.png into tmp_path/out, which holds a temporary a killed run left
    (.partial-1-k.png): its exit status 0 asserted; returns the folder."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".partial-1-k.png").write_bytes(b"x")
    assert predict.main([str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights",
                         str(files / "tiny.pt"), "--input-size", "64", "--out", str(out)]) == 0
    return out


def test_a_folder_without_locks_is_written_and_its_temporaries_kept(files, tmp_path, monkeypatch):
    """A file system on which flock fails (an NFS mount without its lock daemon: ENOLCK) failed every image's write
    ('No locks available') and, with a temporary left there, the start itself (a traceback): the images are written
    unlocked, as before locks were taken, and a temporary that cannot be told from a running predict's is kept."""
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = _predict_into_a_folder_with_a_stale_temporary(files, tmp_path)
    assert sorted(f.name for f in out.iterdir()) == [".partial-1-k.png", "a.pfm", "a.png", "a_colored.png"]
    assert _read_pfm(out / "a.pfm").shape == (64, 96)


def test_a_killed_runs_temporaries_are_removed_from_an_nfs_folder(files, tmp_path, monkeypatch):
    """Over NFS, flock is a byte-range lock on the whole file, and an exclusive one needs the file open for writing
    (flock(2): EBADF otherwise). The cleanup opened the temporaries read-only: with one a killed run left in an NFS
    output folder, predict's start failed with a traceback (Bad file descriptor). That lock, emulated here, is now
    taken on a descriptor open for writing, and the stale temporary removed."""
    import errno
    import fcntl

    real_flock = fcntl.flock

    def nfs_flock(fd, operation):
        if operation & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    out = _predict_into_a_folder_with_a_stale_temporary(files, tmp_path)
    assert sorted(f.name for f in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"]


@pytest.mark.parametrize("how", ["console_script", "python_m"])
def test_ctrl_c_while_torch_is_imported_is_one_line_and_130(files, tmp_path, how):
    """SIGINT in the first seconds (torch being imported), as `dpt_predict` (ros2 run) and as `python -m`: the same
    one line and 130 as later (was: a KeyboardInterrupt traceback from inside torch's import)."""
    run = console_script("dpt_predict") if how == "console_script" else \
        "import runpy; runpy.run_module('dpt_ros.tools.predict', run_name='__main__', alter_sys=True)"
    r = subprocess.run([sys.executable, "-c", CTRL_C_DURING_IMPORT + run, "torch", str(files / "images"),
                        "--variant", "dpt_tiny", "--weights", "random", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (130, "predict: interrupted\n"), r.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_random_weights_are_announced(files, capsys):
    assert predict.main([str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", "random",
                         "--input-size", "64", "--out", str(files / "out_random")]) == 0
    err = capsys.readouterr().err
    assert "RANDOM WEIGHTS" in err and "meaningless" in err


def test_outputs_never_overwrite_inputs_or_each_other(files, capsys, tmp_path):
    """--out the images' own folder is refused before anything is written (an input a.png would become a's 16-bit
    depth PNG); two inputs of one name (a.jpg, a.png) get a_jpg.* and a_png.*, each its own prediction; a one-pixel
    image (a flat prediction) is written like any other; an output folder that cannot be made is one line, exit 2."""
    images = tmp_path / "same"
    images.mkdir()
    rgb = pattern_image(96, 64, seed=1)
    cv2.imwrite(str(images / "a.png"), rgb[..., ::-1])
    original = (images / "a.png").read_bytes()
    common = ["--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"), "--input-size", "64"]
    assert predict.main([str(images), *common, "--out", str(images)]) == 2
    assert "would overwrite the input image" in capsys.readouterr().err
    assert (images / "a.png").read_bytes() == original and sorted(p.name for p in images.iterdir()) == ["a.png"]

    cv2.imwrite(str(images / "a.jpg"), pattern_image(50, 70, seed=2)[..., ::-1])
    cv2.imwrite(str(images / "dot.png"), rgb[:1, :1, ::-1])
    out = tmp_path / "out"
    assert predict.main([str(images), *common, "--out", str(out)]) == 0
    assert {"a_jpg.pfm", "a_png.pfm", "dot.pfm", "dot_colored.png"} <= {p.name for p in out.iterdir()}
    assert _read_pfm(out / "a_jpg.pfm").shape == (70, 50) and _read_pfm(out / "a_png.pfm").shape == (64, 96)
    assert predict.output_names([images / "a.jpg", images / "a.png", tmp_path / "a.png", images / "b.png"]) == \
        ["a_jpg", "a_png", "a_png_2", "b"]
    # an input named as another's output: a.png gives a_colored.png, the .png of an input a_colored.png; x_labels
    # likewise; each set of outputs stays its input's
    names = predict.output_names([images / "a.png", images / "a_colored.png", images / "x_labels.png",
                                  images / "x.jpg", images / "a_colored_2.png"])
    assert names == ["a", "a_colored_2", "x_labels", "x_2", "a_colored_2_2"]
    files = [name + suffix for name in names for suffix in predict.OUTPUT_SUFFIXES]
    assert len(files) == len(set(files))

    blocker = tmp_path / "file"
    blocker.write_text("")
    capsys.readouterr()
    assert predict.main([str(images / "dot.png"), *common, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("predict: cannot create the output folder") and "Traceback" not in err
    assert f"{blocker} is a file, so no folder can be made under it" in err
    # --out naming an existing file: said to be a file (mkdir's own 'File exists' told nothing), what to do
    assert predict.main([str(images / "dot.png"), *common, "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file, not a folder; give --out a folder" in err and "File exists" not in err
    assert blocker.read_text() == ""
    # a path that cannot even be looked at (a name longer than the file system allows): one line, with the name's
    # length and the limit and what to do (it was mkdir's bare 'File name too long')
    too_long = tmp_path / ("n" * 300) / "out"
    assert predict.main([str(images / "dot.png"), *common, "--out", str(too_long)]) == 2
    err = capsys.readouterr().err
    assert err == (f"predict: cannot create the output folder {too_long}: File name too long (300 bytes; the file "
                   f"system of {tmp_path} takes names of {os.pathconf(tmp_path, 'PC_NAME_MAX')} bytes at most): give "
                   "--out a shorter name\n"), err[-2000:]


@pytest.mark.skipif(not os.path.exists("/proc/self/mountinfo"), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_made_there_is_said_why(files, capsys, tmp_path):
    """--out /proc/x said only mkdir's 'No such file or directory', though /proc is there: it is said to be the
    kernel's virtual file system, and what to give instead; a read-only file system and a folder without the
    permission to write are said as such (the error as the kernel gives it for each: EROFS, EACCES), with the folder
    and its owner and mode; a full file system (ENOSPC, EDQUOT), said before only as the system's 'No space left on
    device', with what to do; a file larger than the file system takes (EFBIG), with what to do."""
    import resource
    from pathlib import Path

    from dpt_ros.tools import _file_system, output_folder_error

    elsewhere = f"give --out a path elsewhere, e.g. under your home folder ({Path.home()})"
    common = ["--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"), "--input-size", "64"]
    assert predict.main([str(files / "images" / "a.png"), *common, "--out", "/proc/dpt_ros_predict_out/x"]) == 2
    assert capsys.readouterr().err == (
        "predict: cannot create the output folder /proc/dpt_ros_predict_out/x: /proc is in the kernel's virtual proc "
        f"file system (mounted at /proc), where no folder or file of yours belongs; {elsewhere}\n")
    folder = tmp_path / "kept"
    folder.mkdir(mode=0o555)
    out = folder / "out"
    reason = output_folder_error(out, PermissionError(errno.EACCES, "Permission denied", str(out)))
    assert reason == (f"no permission to write in {folder} (owner {pwd.getpwuid(os.geteuid()).pw_name}, dr-xr-xr-x; "
                      f"this tool runs as {pwd.getpwuid(os.geteuid()).pw_name}); {elsewhere}")
    reason = output_folder_error(out, OSError(errno.EROFS, "Read-only file system", str(out)))
    assert reason.startswith(f"{folder} is on a read-only file system (") and \
        reason.endswith(f"): nothing can be written there; {elsewhere}"), reason
    # a full file system (the system's reason alone, before): what to do, and where
    fs_type, mount = _file_system(folder)
    assert output_folder_error(out, OSError(errno.ENOSPC, "No space left on device", str(out))) == (
        f"the file system of {folder} is full (No space left on device; {fs_type} mounted at {mount}): free some space "
        "on it, or give --out a path on another file system")
    assert output_folder_error(out, OSError(errno.EDQUOT, "Disk quota exceeded", str(out)), option="OUT") == (
        f"your disk quota on the file system of {folder} is used up (Disk quota exceeded; {fs_type} mounted at "
        f"{mount}): free some space on it, or give OUT a path on another file system")
    # a file larger than the file system takes (EFBIG without a file size limit: a process's, ulimit -f, is said as
    # that, test_tools_calibrate_depth.py)
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY:
        assert output_folder_error(out, OSError(errno.EFBIG, "File too large", str(out))) == (
            f"the file is larger than the file system of {folder} takes (File too large; {fs_type} mounted at "
            f"{mount}): give --out a path on another file system")
    # what nothing more can be told of: the system's reason, as before
    assert output_folder_error(out, OSError(errno.EIO, "Input/output error", str(out))) == "Input/output error"


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup"), reason="needs Linux's /sys/fs/cgroup")
def test_an_output_folder_of_the_kernels_is_refused_before_it_is_made(files, capsys, tmp_path):
    """--out /sys/fs/cgroup/x was made where the file system let it: as root, mkdir made a folder there (a tmpfs
    under /sys on this machine) or, in a cgroup mount (/sys/fs/cgroup/memory/x), a new control group, and the tool
    went on writing into it; only a failed mkdir was said to be the kernel's. A folder under /sys, /proc or /dev, or
    in a cgroup mount wherever it is, or a link to one, is now refused before anything is made there (checked here on
    the paths first, so that no tool is run on one that would be made)."""
    from pathlib import Path

    from dpt_ros.tools import _file_system, kernel_folder, refuse_kernel_folder

    elsewhere = f"give --out a path elsewhere, e.g. under your home folder ({Path.home()})"
    (tmp_path / "link").symlink_to("/sys/fs/cgroup")
    paths = [Path("/sys/fs/cgroup/dpt_ros_out"), tmp_path / "link" / "dpt_ros_out", Path("/dev/dpt_ros_out"), Path("/proc/dpt_ros_out"), Path("/sys")]
    with open("/proc/self/mountinfo") as f:   # (every cgroup mount: a folder made there is a control group)
        mounts = [line.split(" - ")[0].split()[4] for line in f if line.split(" - ")[1].startswith("cgroup")]
    paths += [Path(m) / "dpt_ros_out" for m in mounts]
    for path in paths:
        with pytest.raises(PermissionError):   # (before the tool is run on it: it would make the folder)
            refuse_kernel_folder(path)
        assert kernel_folder(path) is not None, path
    for mount in mounts:
        assert kernel_folder(Path(mount) / "dpt_ros_out") == (f"{mount} is in the kernel's virtual "
                                                             f"{_file_system(Path(mount))[0]} file system (mounted at "
                                                             f"{mount})")
    assert kernel_folder(tmp_path / "out") is None and kernel_folder(Path.home()) is None
    assert kernel_folder(Path("/dev/shm/dpt_ros_out")) is None   # (the user's tmpfs, fast scratch space)
    common = [str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
              "--input-size", "64"]
    for path in paths[:2]:
        try:
            assert predict.main([*common, "--out", str(path)]) == 2
        finally:
            made = os.path.isdir("/sys/fs/cgroup/dpt_ros_out")
            if made:   # (by a tool that did not refuse it: not left behind)
                os.rmdir("/sys/fs/cgroup/dpt_ros_out")
        assert not made
        # (here /sys/fs is sysfs, /sys/fs/cgroup a tmpfs; where it is a cgroup2 mount itself, that one is named)
        assert capsys.readouterr().err == (f"predict: cannot create the output folder {path}: "
                                           f"{kernel_folder(paths[0])}, where no folder or file of yours belongs; "
                                           f"{elsewhere}\n")
    assert kernel_folder(paths[0]) in ("/sys/fs is in the kernel's virtual sysfs file system (mounted at /sys)",
                                       f"/sys/fs/cgroup is in the kernel's virtual {_file_system(paths[0].parent)[0]} "
                                       "file system (mounted at /sys/fs/cgroup)")


def test_an_image_the_resize_method_refuses_is_named_and_the_rest_processed(files, capfd, tmp_path):
    """A 400x2 image under --resize-method lower_bound (a 128x25600 network input, refused) ended the run with a
    traceback before the images after it; it is skipped with the reason, the others done, status 1."""
    import cv2

    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.zeros((2, 400, 3), np.uint8))
    out = tmp_path / "out"
    code = predict.main([str(strip), str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", "random",
                         "--resize-method", "lower_bound", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 1 and (out / "a.pfm").exists() and not (out / "strip.pfm").exists()
    assert f"predict: {strip}: a 400x2 image gives a 128x25600 (height x width) network input" in err
    assert "skipped" in err and "Traceback" not in err


def test_an_image_whose_files_cannot_be_written_is_named_with_why_and_the_rest_processed(files, capfd, tmp_path):
    """A write that failed (here a real one: an image whose output name <name>_colored.png is too long for the file
    system, though the image's own name and its <name>.pfm fit) ended the run with "cannot write its results to OUT:
    File name too long", exit status 2, the images after it not run: the file is named with the system's reason, its
    length and the limit, and what to do, the image skipped and counted (exit status 1), the others done, none of its
    files (nor temporaries) left."""
    import cv2

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    long = tmp_path / ("l" * (limit - 5) + ".png")   # (it fits, and so do its .pfm and .png; its _colored.png not)
    cv2.imwrite(str(long), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    code = predict.main([str(long), str(files / "images" / "a.png"), "--variant", "dpt_tiny", "--weights", "random",
                         "--input-size", "64", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 1 and sorted(f.name for f in out.iterdir()) == ["a.pfm", "a.png", "a_colored.png"], err
    assert (f"predict: {long}: cannot write {out / (long.stem + '_colored.png')}: File name too long ({limit + 7} "
            f"bytes; the file system of {out} takes names of {limit} bytes at most): give the image a shorter file "
            "name; skipped\n") in err, err
    # an output folder removed while it ran: said as gone (the folder's parent is not what refused a folder)
    gone = tmp_path / "gone"
    assert predict._write_error(gone, FileNotFoundError(errno.ENOENT, "No such file or directory", str(gone / "a.pfm"))
                                ) == (f"the output folder {gone} is no longer there (No such file or directory; removed "
                                      "while predict ran?): make it again, or give --out another folder, and run "
                                      "predict again for the images said skipped")


def test_an_image_whose_names_fit_is_written_though_its_temporaries_names_would_not(files, capfd, tmp_path):
    """An image whose output names fit the file system (the longest, <name>_colored.png, 3 bytes short of its limit)
    failed with "File name too long" all the same: its temporaries, .partial-<pid>-<file>, are up to 17 bytes longer.
    Such a temporary is now shortened to the limit: the image is written, its three files and nothing else."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    long = tmp_path / ("l" * (limit - 15) + ".png")
    cv2.imwrite(str(long), pattern_image(40, 30, seed=6)[..., ::-1])
    out = tmp_path / "out"
    code = predict.main([str(long), "--variant", "dpt_tiny", "--weights", "random", "--input-size", "64",
                         "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 0, err
    assert sorted(f.name for f in out.iterdir()) == [long.stem + s for s in (".pfm", ".png", "_colored.png")], err
    assert len(long.stem + "_colored.png") == limit - 3 and _read_pfm(out / (long.stem + ".pfm")).shape == (30, 40)


def test_a_shortened_temporary_fits_stays_apart_and_a_killed_runs_is_removed(tmp_path):
    """temporary_name: .partial-<pid>-<file> where that fits the limit; else within it (in bytes, two-byte characters
    whole), one per name of an image's set though the names share their head, with the extension (which OpenCV reads)
    and the pid; such a temporary that a run killed outright left is one the next run removes."""
    pid = os.getpid()
    assert predict.temporary_name("a_colored.png", 255) == f".partial-{pid}-a_colored.png"
    stem = "\u00e9" * 120   # (240 bytes in UTF-8)
    names = [stem + s for s in (".pfm", ".png", "_colored.png")]
    assert [len(os.fsencode(n)) for n in names] == [244, 244, 252]
    temporaries = [predict.temporary_name(n, 255) for n in names]
    assert len(set(temporaries)) == 3 and all(len(os.fsencode(t)) <= 255 for t in temporaries), temporaries
    assert all(t.startswith(f".partial-{pid}-\u00e9") and t.endswith(os.path.splitext(n)[1])
               for t, n in zip(temporaries, names)), temporaries
    for t in temporaries:
        (tmp_path / t).write_bytes(b"x")   # (unlocked: as a run killed outright leaves them)
    assert predict.remove_stale_partials(tmp_path) == (3, 0) and list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_none_of_the_images_new_files(files, capfd, tmp_path):
    """A rename into place that fails after another succeeded (a real one: the second of a's three names, a.png, is a
    folder with a file in it, which os.replace cannot put a file over) left a.pfm, half of a's new set, in place of an
    earlier run's a.pfm: the ones already renamed are removed (that earlier a.pfm with them, as write_outputs says),
    the image is named with the file that failed, why and what to do, and skipped, and the names not reached keep the
    earlier run's file."""
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)
    (out / "a.png" / "kept").write_text("a file in the folder named a.png")
    (out / "a.pfm").write_text("an earlier run's a.pfm")
    (out / "a_colored.png").write_text("an earlier run's a_colored.png")
    image = files / "images" / "a.png"
    code = predict.main([str(image), "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"),
                         "--input-size", "64", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 1 and f"predict: {image}: cannot write {out / 'a.png'}: Is a directory: a folder has that name " \
                         "(an earlier run's --out, or a folder put there): move or rename it, or give --out another " \
                         "folder; skipped\n" in err, err
    assert sorted(f.name for f in out.iterdir()) == ["a.png", "a_colored.png"], err
    assert (out / "a_colored.png").read_text() == "an earlier run's a_colored.png"
    assert [f.name for f in (out / "a.png").iterdir()] == ["kept"]


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root (unshare -m, mount a tmpfs)")
def test_a_full_disk_is_said_with_the_file_and_what_to_do_and_the_rest_processed(files, tmp_path):
    """A full disk mid-run (real: predict in a mount namespace of its own whose /dev/shm is a 1 MiB tmpfs, --out in
    it) said only "cannot write its results to OUT: No space left on device" and ended the run (exit status 2),
    the images after it not run; where a PNG was what did not fit, OpenCV said only that it could not write it. The
    file, the file system and what to do are said (output_folder_error's words), each such image is skipped and
    counted (exit status 1), and the next image, whose files fit once the failed one's temporaries are gone, is
    written."""
    big = tmp_path / "big.png"   # (its .pfm alone, 800 x 600 float32, is 1.9 MB)
    cv2.imwrite(str(big), pattern_image(800, 600, seed=4)[..., ::-1])
    exact = tmp_path / "exact.png"   # (its .pfm, 256 x 256 float32 and a 14-byte header, fills 65 pages: all left)
    cv2.imwrite(str(exact), pattern_image(256, 256, seed=5)[..., ::-1])
    fill = (256 - 65) * 4096   # (of the tmpfs's 256 pages of 4 KiB)
    proc = with_own_dev_shm(1, ["dpt_ros.tools.predict", str(big), str(exact), str(files / "images" / "a.png"),
                                "--variant", "dpt_tiny", "--weights", str(files / "tiny.pt"), "--input-size", "64",
                                "--out", "/dev/shm/out"],
                            before=f"mkdir /dev/shm/out && head -c {fill} /dev/zero > /dev/shm/fill",
                            cwd=os.path.dirname(os.path.dirname(dpt_ros.__file__)))   # (the repository)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    full = ("the file system of /dev/shm/out is full (No space left on device; tmpfs mounted at /dev/shm): free some "
            "space on it, or give --out a path on another file system; skipped\n")
    assert f"predict: {big}: cannot write /dev/shm/out/big.pfm: {full}" in out, out[-3000:]
    assert f"predict: {exact}: cannot write /dev/shm/out/exact.png: {full}" in out, out[-3000:]
    assert "-> a.pfm, a.png, a_colored.png" in out and "Traceback" not in out, out[-3000:]


def test_a_closed_or_full_stderr_changes_neither_what_predict_writes_nor_its_exit_status(files, tmp_path, redirected):
    """Started with stderr closed (2>&-), predict's refusal went onto stdout (a print to sys.stderr, None then, prints
    there), among the lines a user reads or pipes; with stderr on a full disk (2>/dev/full), its first line there, the
    random-weights banner, raised OSError: exit status 1, no image run. Now a line stderr cannot take is dropped, and
    the run is as with a stderr (the console script and python -m alike)."""
    image = files / "images" / "a.png"
    missing = [sys.executable, "-c", "import sys; " + console_script("dpt_predict"), tmp_path / "nope.png",
               "--variant", "dpt_tiny", "--weights", "random", "--out", tmp_path / "a"]
    run = [sys.executable, "-m", "dpt_ros.tools.predict", image, "--variant", "dpt_tiny", "--weights", "random",
           "--input-size", "64", "--out", tmp_path / "b"]
    (code, out), (ran, said) = concurrently(lambda case: redirected(*case), [(missing, "2>&-"), (run, "2>/dev/full")])
    assert (code, out) == (2, "")
    assert ran == 0 and said.startswith(f"{image}: 96x64 (WxH)"), (ran, said)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["a.pfm", "a.png", "a_colored.png"]


def test_a_stdout_that_cannot_be_written_drops_the_report_and_every_image_is_run(files, tmp_path, redirected):
    """stdout whose reader has gone (`predict FOLDER | head -1`) or on a full disk (`>/dev/full`): the first image's
    line raised BrokenPipeError / OSError, a traceback, exit status 1, and the images after it were not run. Now both
    images are run and written, the report dropped and said once on stderr, without the interpreter's "Exception
    ignored" at exit; exit status 141 for the reader gone (as a program SIGPIPE ends), 1 for the full disk."""
    images = [files / "images" / "a.png", files / "images" / "b.jpg"]
    argv = [sys.executable, "-m", "dpt_ros.tools.predict", *images, "--variant", "dpt_tiny", "--weights",
            files / "tiny.pt", "--input-size", "64", "--out"]

    def gone(out):   # (the pipe's read end closed before predict starts: every write finds no reader)
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run(list(map(str, argv + [out])), stdout=write_end, stderr=subprocess.PIPE, text=True,
                                  timeout=120)
        finally:
            os.close(write_end)
        return done.returncode, done.stderr

    (piped, piped_err), (full, full_err) = concurrently(lambda case: case[0](*case[1:]), [
        (gone, tmp_path / "piped"), (redirected, argv + [tmp_path / "full"], "2>&1 >/dev/full")])
    assert piped == 141 and piped_err == ("predict: cannot write on standard output: its reader has gone (Broken pipe; "
                                          "e.g. | head); the rest of what it prints there is dropped, its work goes "
                                          "on (its other outputs are written; exit status 141 if nothing else "
                                          "fails)\n"), (piped, piped_err)
    assert full == 1 and full_err.splitlines() == [
        "predict: cannot write on standard output: No space left on device; the rest of what it prints there is "
        "dropped, its work goes on (its other outputs are written; exit status 1 if nothing else fails)"], full_err
    for out in ("piped", "full"):
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == [
            "a.pfm", "a.png", "a_colored.png", "b.pfm", "b.png", "b_colored.png"], out
