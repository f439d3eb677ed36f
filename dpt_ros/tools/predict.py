"""Run a DPT model on image files, without ROS: the node's model and pipeline, the official outputs.

    python -m dpt_ros.tools.predict --variant dpt_hybrid --weights weights/dpt_hybrid-midas-501f0c75.pt \\
        photos/*.jpg --out predictions/
    python -m dpt_ros.tools.predict --variant dpt_large_ade20k --weights weights/dpt_large-ade20k-b12dca68.pt \\
        photos/ --out predictions/

Per image (``<name>`` = the file name without its extension; ``<name>_<extension>`` where two inputs share a
name), as the official ``run_monodepth.py`` and
``run_segmentation.py`` write them, so that results can be compared with the official code file by file:

- depth variants: ``<name>.pfm`` (float32 at the image size: relative inverse depth, or for the metric
  variants depth x 256 (KITTI) / x 1000 (NYU), as the official script scales it) and ``<name>.png`` (16-bit:
  that stretched to 0..65535 per image; with ``--absolute-depth`` a metric variant's values as they are,
  KITTI's 1/256 m and NYU's millimetres, clipped to 65535); plus ``<name>_colored.png`` (inverse depth,
  inferno over its 2nd-98th percentile);
- segmentation variants: ``<name>_labels.png`` (8-bit labels 1..150, 0 = unlabeled) and ``<name>.png``
  (the ADE20K palette blended half over the image).

Exit status: 0 all images done, 1 some could not be read, run or written, or a folder named beside them had none
(each named with why, a write failure with its file and what to do, e.g. a full disk, a read failure with what to do,
e.g. no permission to read it: its owner and mode; the rest done), 2 usage error
(bad arguments or weights, no images: a folder without any, or only names that are no file or folder, or a file
named as a folder, ``a.png/``; an output folder that cannot be made or that would overwrite an input image: all
said before the model loads), 130
interrupted (Ctrl-C: one line, no traceback; the image being written leaves none of its files, the ones before it
keep theirs); where all images were done but standard output could not be written (a line on stderr says so;
the images are run all the same), 141 for its reader gone (``| head -1``) and 1 for another error (a full disk).
``--weights random`` runs with random initialisation and says so loudly: outputs meaningless.
A run killed outright (SIGKILL, a power cut) leaves the temporary ``.partial-<pid>-<file>`` files of the image it was
writing (shortened to ``.partial-<pid>-<head>~<digest><extension>`` where that is longer than the file system takes);
the next run into the same folder removes them (never those of a predict still writing there: each holds a lock on
its temporaries) and says how many. An output name longer than the file system takes is said with its length and
the limit. The folders made for ``--out`` are removed again where the weights then fail to load, each only while
empty and while no other predict uses it (each holds a lock on its ``--out``): of two runs into one new folder, one
whose weights fail leaves it to the other.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from dpt_ros import INPUT_SIZE_RANGE, PRECISIONS, int_range_refusal
from dpt_ros.tools import (_NO_LOCKS, DEFAULT_NAME_MAX, _owner_and_mode, _user, create_locked, name_max,
                           name_too_long, output_folder_error, refuse_kernel_folder, remove_unheld)
from dpt_ros.tools import temporary_name as shared_temporary_name
from dpt_ros.tools.options import input_path, output_folder, ToolParser

if __name__ == "__main__":   # (the console script: dpt_ros.ros.console.dpt_predict)
    from dpt_ros.ros.console import tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)

try:
    import cv2
    import numpy as np
    import torch

    from dpt_ros import pipeline
    from dpt_ros.model import CheckpointError, VARIANTS, get_variant, load_engine
    from dpt_ros.model.engine import check_target
    from dpt_ros.pipeline import IMAGE_FILE_EXTENSIONS, RESIZE_METHODS
except KeyboardInterrupt:   # Ctrl-C while torch loads (python -m; the console script: dpt_ros.ros.console)
    if __name__ != "__main__":
        raise
    print("predict: interrupted", file=sys.stderr)
    sys.exit(130)

#: the official run_monodepth.py's scale of a metric variant's depth before writing it
OFFICIAL_DEPTH_SCALE = {"dpt_hybrid_kitti": 256.0, "dpt_hybrid_nyu": 1000.0}
_RANDOM_BANNER = """
##############################################################################
#  predict: RANDOM WEIGHTS (--weights random). Every output is meaningless;  #
#  only the shapes and timings are real. Give a checkpoint file for results. #
##############################################################################
"""


def parse_args(argv=None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("images", nargs="+", type=input_path, help="image files, or folders (their images, sorted)")
    ap.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    ap.add_argument("--weights", required=True, help="checkpoint file (official .pt, Hugging Face), or 'random'")
    ap.add_argument("--out", required=True, type=output_folder, help="output folder (created)")
    ap.add_argument("--device", default="auto", help="auto (the default: CUDA where there is one, as for the node), "
                                                     "cpu, cuda, cuda:N")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="fp32 (the default, as the node's precision); bf16; fp16 on CUDA only")
    ap.add_argument("--input-size", type=int, default=0,
                    help="network size, %d..%d in steps of %d; 0 = the variant's own (as the node's input_size)"
                    % INPUT_SIZE_RANGE)
    ap.add_argument("--resize-method", default="minimal", choices=RESIZE_METHODS,
                    help="how the image is scaled to the network size, DPT's keep-aspect rules (default minimal, "
                         "as the node's resize_method)")
    ap.add_argument("--absolute-depth", action="store_true",
                    help="metric variants: write <name>.png unstretched (KITTI 1/256 m, NYU mm), as the official flag")
    return ap.parse_args(argv)


def image_files(items: list[str]) -> tuple[list[tuple[Path, str]], list[tuple[str, str]], list[str]]:
    """The files named, and the images in the folders named (sorted; a subfolder, whatever its name, ``x.png/`` too,
    is not looked in), in order, each with the name its lines give it: a name as given (``photo/``, ``./a.png``:
    ``Path`` drops the slash and the ``./``, so a skipped ``photo/`` was said as ``photo``), a folder's image as the
    folder's name given joined with the file's. Then the names given that give no image, each with why, for its line:
    the folders without an image (each with what is said of what it holds, other files and subfolders, which are not
    looked in: ``''`` where it is empty), and the names of a file written as a folder's (``notimg.png/``, ``a.png/.``:
    the system refuses them, 'Not a directory', where ``Path`` took them for the file)."""
    files, empty, not_folders = [], [], []
    for item in items:
        p = Path(item)
        if os.path.isdir(p):   # (False for a name it cannot look at, which read_image_file then names with why)
            entries = sorted(p.iterdir())
            images = [f for f in entries if f.suffix.lower() in IMAGE_FILE_EXTENSIONS and not os.path.isdir(f)]
            files += [(f, os.path.join(item, f.name)) for f in images]
            if not images:
                subfolders = sum(map(os.path.isdir, entries))
                others = len(entries) - subfolders
                said = [("its one file has no" if others == 1 else f"none of its {others} files has an")
                        + f" image's extension: {', '.join(e.lstrip('.') for e in IMAGE_FILE_EXTENSIONS)}"
                        ] if others else []
                said += [("its one subfolder is" if subfolders == 1 else f"its {subfolders} subfolders are")
                         + " not looked in"] if subfolders else []
                empty.append((item, f" ({'; '.join(said)})" if said else ""))
        elif _file_as_folder(item):
            not_folders.append(f"{item}: not a folder: {p} is a file (a name ending in / or /. is a folder's); "
                               f"give it as {p}")
        else:
            files.append((p, item))
    return files, empty, not_folders


def _file_as_folder(item: str) -> bool:
    """Whether ``item`` names a file as if it were a folder (``a.png/``, ``a.png/.``): the system refuses it, while
    ``Path(item)``, which drops the slash and the dot, is the file."""
    try:
        os.stat(item)
    except NotADirectoryError:
        return os.path.isfile(Path(item))
    except OSError:
        pass
    return False


def write_pfm(path: Path, values: np.ndarray) -> None:
    """A (H, W) float32 image as PFM (``Pf``, little-endian, bottom row first), as the official util.io does."""
    values = np.ascontiguousarray(np.flipud(values), dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1\n" % (values.shape[1], values.shape[0]))
        f.write(values.tobytes())


def stretch_16bit(values: np.ndarray) -> np.ndarray:
    """The official 16-bit PNG of a relative prediction: min..max -> 0..65535 (truncated), all 0 if flat."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= np.finfo(np.float64).eps:
        return np.zeros(values.shape, np.uint16)
    return (65535.0 * (values.astype(np.float64) - lo) / (hi - lo)).astype(np.uint16)


def predict(engine, pre: pipeline.Preprocessor, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs at the image size: ``inverse_depth`` [+ ``depth`` metres] or ``labels``."""
    h, w = rgb.shape[:2]
    out = engine.run(pre(rgb))
    result = {}
    if "logits" in out:
        result["labels"] = pipeline.upsampled_labels(out["logits"], (h, w))[0].cpu().numpy()
    else:
        result["inverse_depth"] = pipeline.upsample(out["inverse_depth"], (h, w))[0].float().cpu().numpy()
        if "depth" in out:
            result["depth"] = pipeline.upsample(out["depth"], (h, w))[0].float().cpu().numpy()
    return result


@contextlib.contextmanager
def _sigint_deferred():
    """SIGINT within the block is acted on when the block ends (the main thread's handler is swapped for one that
    notes it; other threads leave the handler alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if noted and callable(previous):
            previous(signal.SIGINT, noted[0])   # default_int_handler: KeyboardInterrupt here
        elif noted and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def write_outputs(out_dir: Path, name: str, variant: str, rgb: np.ndarray, result: dict,
                  absolute_depth: bool = False) -> list[Path]:
    """Write one image's files (see the module); returns their paths. All or none of them: each is written under a
    temporary name (:func:`temporary_name`, locked while this process has it: :func:`remove_stale_partials`) and
    they are renamed into place together once all are written, so that an interruption (Ctrl-C) or a write error
    part-way leaves neither a truncated file nor half an image's set. A rename that fails (a final name that is a
    folder, the folder removed meanwhile) removes the files already renamed into place, so that none of the image's
    new files stay; an earlier run's file of the same name that such a rename had already replaced is gone with them
    (not restored: run predict again for the image), while those of the names not yet reached stay as they were.

    :raises OSError: a file could not be written (its errno and reason; ``filename`` the file it was to become); a
        name longer than the file system takes (ENAMETOOLONG) before anything of the image is written."""
    limit = name_max(out_dir)
    staged: list[tuple[Path, Path]] = []   # (temporary, final)
    locks: list[int] = []
    writing: Optional[Path] = None   # the file being written or renamed into place
    placed: list[Path] = []   # the files renamed into place

    def stage(file_name: str) -> Path:
        nonlocal writing
        final = writing = out_dir / file_name
        if len(os.fsencode(file_name)) > limit:   # (said before its temporary, whose name would fit, is written)
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(final))
        staged.append((out_dir / temporary_name(file_name, limit), final))
        locks.append(create_locked(staged[-1][0]))
        return staged[-1][0]

    def png(file_name: str, values: np.ndarray) -> None:
        path = stage(file_name)
        if not cv2.imwrite(str(path), values):
            # OpenCV says only False (a full disk, a name too long): written here, the system says why
            ok, encoded = cv2.imencode(".png", values)
            if not ok:
                raise OSError(f"OpenCV could not encode {file_name} as PNG")
            with open(path, "wb") as f:
                f.write(encoded.tobytes())

    try:
        if "labels" in result:
            labels = result["labels"]
            png(f"{name}_labels.png", labels)
            blend = pipeline.overlay(rgb, pipeline.colorize_labels(labels), 0.5)
            png(f"{name}.png", cv2.cvtColor(blend, cv2.COLOR_RGB2BGR))
        else:
            inv = result["inverse_depth"]
            official = inv if variant not in OFFICIAL_DEPTH_SCALE \
                else result["depth"] * np.float32(OFFICIAL_DEPTH_SCALE[variant])
            write_pfm(stage(f"{name}.pfm"), official)
            png(f"{name}.png", np.clip(official, 0, 65535).astype(np.uint16) if absolute_depth
                else stretch_16bit(official))
            lo, hi = (float(v) for v in np.percentile(inv, (2, 98)))
            if not hi > lo:   # a flat prediction (a one-pixel image, random weights): one colour
                hi = lo + 1.0
            png(f"{name}_colored.png", cv2.cvtColor(pipeline.colorize(inv, "inferno", lo, hi), cv2.COLOR_RGB2BGR))
        with _sigint_deferred():   # (a Ctrl-C meanwhile takes effect once all are renamed: the set appears whole)
            for temporary, final in staged:
                writing = final
                os.replace(temporary, final)
                placed.append(final)
    except BaseException as e:
        for path in [temporary for temporary, _ in staged] + placed:   # (a renamed temporary: already gone)
            try:
                path.unlink()
            except OSError:
                pass
        if isinstance(e, OSError) and writing is not None:   # (by its own name, not its temporary's)
            raise OSError(e.errno, e.strerror or str(e), str(writing)) from e
        raise
    finally:
        for fd in locks:   # (after the renames or the removals: closing releases the lock)
            os.close(fd)
    return [final for _, final in staged]


#: the temporaries' prefix (:func:`write_outputs`); earlier versions wrote ``.partial-<file>``, without the pid
PARTIAL_PREFIX = ".partial-"
#: an unlocked temporary without a pid (an earlier version's, which locked none) is removed only when older than this
LEGACY_PARTIAL_AGE_S = 3600.0


def temporary_name(file_name: str, limit: int = DEFAULT_NAME_MAX) -> str:
    """The name :func:`write_outputs` writes ``file_name`` under: ``.partial-<pid>-<file_name>`` (the pid: two runs
    into one folder never share a temporary), or where that is longer than ``limit`` bytes (the prefix adds 11 to 17
    bytes) ``.partial-<pid>-<head>~<digest><extension>`` (:func:`dpt_ros.tools.temporary_name`: the extension kept,
    which OpenCV reads)."""
    return shared_temporary_name(f"{PARTIAL_PREFIX}{os.getpid()}-", file_name, limit=limit)


def remove_stale_partials(out_dir: Path) -> tuple[int, int]:
    """Remove the temporaries (``.partial-*.png`` / ``.pfm``, :func:`write_outputs`) in ``out_dir`` that no running
    predict is writing (:func:`dpt_ros.tools.remove_unheld`: none holds a lock on them; an earlier version's, without
    a pid, only once older than :data:`LEGACY_PARTIAL_AGE_S`). Returns ``(removed, kept)``."""
    return remove_unheld(out_dir, lambda name: name.startswith(PARTIAL_PREFIX) and name.endswith((".png", ".pfm")),
                         lambda name: not re.match(r"\d+-", name[len(PARTIAL_PREFIX):]), LEGACY_PARTIAL_AGE_S)


#: the files each input's ``<name>`` gives (which of them depends on the task)
OUTPUT_SUFFIXES = (".pfm", ".png", "_colored.png", "_labels.png")


def output_names(files: list[Path]) -> list[str]:
    """The ``<name>`` of each input's outputs: its file name without the extension, or, where two inputs share
    that (``a.jpg``, ``a.png``, or the same name in two folders), with the extension too (``a_jpg``), and then a
    counter wherever an output file of one would be another's (``a.png`` gives ``a_colored.png``, which an input
    ``a_colored.png`` would give as its own ``.png``), so that no input's results overwrite another's."""
    stems = [p.stem for p in files]
    taken: set[str] = set()
    names = []
    for path, stem in zip(files, stems):
        name = stem if stems.count(stem) == 1 else f"{stem}_{path.suffix.lstrip('.')}"
        base, n = name, 1
        while any(name + suffix in taken for suffix in OUTPUT_SUFFIXES):
            n += 1
            name = f"{base}_{n}"
        taken.update(name + suffix for suffix in OUTPUT_SUFFIXES)
        names.append(name)
    return names


def _absent(path: Path) -> bool:
    """Whether there is no such file (a name it cannot look at, e.g. one too long, is not said so here: reading it
    names why)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _overwritten_input(out_dir: Path, names: list[str], files: list[Path]) -> str:
    """An input file that one of the outputs would replace ('' when none): ``--out`` the images' own folder."""
    inputs = {p.resolve() for p in files if os.path.exists(p)}   # (False for a name it cannot look at)
    for name in names:
        for suffix in OUTPUT_SUFFIXES:
            path = (out_dir / f"{name}{suffix}").resolve()
            if path in inputs:
                return str(path)
    return ""


def _read_error(path: Path, e: Exception) -> str:
    """Why the image ``path`` could not be read (``e``: ``read_image_file``'s ImageFileError, with the reason it
    says, or an OSError), and, where the system refused it, what to do: no permission to read it (its owner and mode,
    the user predict runs as), a read error of the disk (EIO)."""
    cause = e if isinstance(e, OSError) else e.__context__   # (the reader's own: raised from the system's error)
    why = getattr(e, "reason", None) or (f"cannot read it: {e.strerror or e}" if isinstance(e, OSError) else str(e))
    if not isinstance(cause, OSError):
        return why
    if cause.errno in (errno.EACCES, errno.EPERM):
        return (f"{why} ({_owner_and_mode(path)}; predict runs as {_user()}): give this user read permission on it "
                "(chmod, chown), or leave it out")
    if cause.errno == errno.EIO:
        return f"{why} (the disk or file system failed to read it): copy it from a good copy, or leave it out"
    return why


def _write_error(out_dir: Path, e: OSError) -> str:
    """Why an image's file in ``out_dir`` could not be written (``e``), and what to do: ``output_folder_error``'s words
    (a full disk or quota, a read-only file system, no permission: with the folder); a name too long, a folder in the
    way of a file's name or a folder gone meanwhile, which that would take for the folder's own, said here."""
    if e.errno == errno.EISDIR:   # (os.replace onto a folder of the file's name)
        return (f"{e.strerror}: a folder has that name (an earlier run's --out, or a folder put there): move or rename "
                f"it, or give --out another folder")
    if e.errno == errno.ENAMETOOLONG:
        too_long = name_too_long(out_dir, os.path.basename(e.filename or ""))
        if too_long:
            return f"{too_long}: give the image a shorter file name"
        return (f"{e.strerror} (the path, or its temporary's, is longer than the system takes): give --out a shorter "
                f"folder path, or the image a shorter file name")
    if not os.path.isdir(out_dir):
        return (f"the output folder {out_dir} is no longer there ({e.strerror or e}; removed while predict ran?): "
                "make it again, or give --out another folder, and run predict again for the images said skipped")
    return output_folder_error(out_dir, e)


def make_output_folder(out_dir: Path) -> tuple[list[Path], Optional[int]]:
    """Make ``out_dir`` and the folders above it that are missing; returns the folders this run's own ``mkdir`` made
    (deepest first: another predict's, made between the look and the ``mkdir``, is not this run's) and a descriptor
    of ``out_dir`` holding a shared ``flock`` on it (None on a file system without locks), held until it is closed:
    the sign to another predict whose weights failed to load that this one uses the folder
    (:func:`remove_made_folders`). One removed by another predict between its making and this lock is made again.

    :raises OSError: as ``mkdir`` or ``open`` raise it (FileExistsError: a file has its name)."""
    import fcntl

    for attempt in range(10):
        made: list[Path] = []
        try:
            for folder in reversed([p for p in (out_dir, *out_dir.parents) if not os.path.lexists(p)]):
                try:
                    os.mkdir(folder)
                except FileExistsError:   # (made meanwhile by another run: its, not this run's)
                    continue
                made.insert(0, folder)
            if not os.path.isdir(out_dir):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(out_dir))
            fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:   # (a folder on its way removed meanwhile by another predict: made again)
            if attempt == 9:
                raise
            continue
        except PermissionError:   # (a folder it may write in but not read: written unlocked, as before locks)
            if not os.path.isdir(out_dir):
                raise
            return made, None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            return made, None   # (unlocked, as before locks were taken)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(out_dir)):
                return made, fd
        except FileNotFoundError:
            pass
        os.close(fd)   # (removed before this lock by a predict that made it and failed to load: made again)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(out_dir))


def remove_made_folders(made: list[Path], held: Optional[int]) -> None:
    """Remove the folders :func:`make_output_folder` made (``made``, deepest first; ``held``, its lock, released here,
    closed by the caller) where the weights failed to load, each only while it is empty (``rmdir``: what another run
    wrote there stays, and so do the folders above it) and no other predict holds its lock on it (one using the
    folder, its first image not yet written: the folder was removed under it, and then every image failed, 'the
    output folder is no longer there')."""
    import fcntl

    if held is not None:   # (this run's own lock: another descriptor's below would wait for it)
        fcntl.flock(held, fcntl.LOCK_UN)
    for folder in made:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:   # another predict uses it
                return
            except OSError as e:
                if e.errno not in _NO_LOCKS:
                    return
            if not os.path.samestat(os.fstat(fd), os.stat(folder)):
                return
            os.rmdir(folder)   # (refused where anything is in it)
        except OSError:
            return
        finally:
            os.close(fd)


def main(argv=None) -> int:
    """Command line (also the ``dpt_predict`` console script); Ctrl-C ends it with one line and status 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("predict: interrupted", file=sys.stderr)
        return 130


def _main(argv=None) -> int:
    args = parse_args(argv)
    variant = get_variant(args.variant)
    weights = args.weights if args.weights == "random" else os.path.expanduser(args.weights)
    if args.absolute_depth and args.variant not in OFFICIAL_DEPTH_SCALE:
        print(f"predict: --absolute-depth is for the metric variants ({', '.join(OFFICIAL_DEPTH_SCALE)}); "
              f"{args.variant}'s relative inverse depth has no absolute unit", file=sys.stderr)
        return 2
    # (the node's words for its input_size, with the allowed sizes nearest to the one given)
    own = f"the variant's own size, {'x'.join(map(str, variant.net_size))} (height x width)"
    why = int_range_refusal(args.input_size, INPUT_SIZE_RANGE, zero=own)
    if why is not None:
        print(f"predict: --input-size {args.input_size} {why}, as the node's input_size"
              + ("" if own in why else f"; 0 is {own}"), file=sys.stderr)
        return 2
    try:
        check_target(args.device, args.precision, use_cpu="--device cpu")
    except ValueError as e:   # (not the weights' fault: said before they are read)
        print(f"predict: {e}", file=sys.stderr)
        return 2
    # the images named are looked at before the model loads (seconds, or a minute for a large one on a CPU): a folder
    # without images, or only names that are no file or folder (a typo), is said at once, not after the load
    out_dir = Path(args.out)
    found, empty, not_folders = image_files(args.images)
    files, shown = [path for path, _ in found], [said for _, said in found]
    if not files or all(map(_absent, files)):
        absent = [said for _, said in found]   # (all of them, where there are any)
        if empty:
            print("predict: no images found in " + ", ".join(item + more for item, more in empty), file=sys.stderr)
        for why in not_folders:
            print(f"predict: {why}", file=sys.stderr)
        if absent:
            print("predict: no file or folder " + ", ".join(map(repr, absent)) + " (a typo, or another working "
                  "folder?): give image files or folders of images; nothing was run", file=sys.stderr)
        return 2
    # names given that give no image, beside some that do: each said, and counted as skipped (exit status 1)
    for why in [f"{item}: no images in this folder{more}" for item, more in empty] + not_folders:
        print(f"predict: {why}; skipped", file=sys.stderr)
    skipped = len(empty) + len(not_folders)
    names = output_names(files)
    clash = _overwritten_input(out_dir, names, files)
    if clash:
        print(f"predict: an output would overwrite the input image {clash}; give another --out folder",
              file=sys.stderr)
        return 2
    # the output folder is made before the model loads, too: one that cannot be (a file in the way, the kernel's, a
    # name too long) is said at once; the folders this run made for it are removed again where the weights then fail
    # to load, unless another predict uses the folder meanwhile (make_output_folder)
    try:
        refuse_kernel_folder(out_dir)
        made, held = make_output_folder(out_dir)
    except OSError as e:
        print(f"predict: cannot create the output folder {out_dir}: {output_folder_error(out_dir, e)}", file=sys.stderr)
        return 2
    try:
        return _load_and_run(args, variant, weights, out_dir, made, held, files, shown, names, skipped)
    finally:
        if held is not None:
            os.close(held)


def _load_and_run(args, variant, weights, out_dir: Path, made: list[Path], held: Optional[int],
                  files: list[Path], shown: list[str], names: list[str], skipped: int) -> int:
    """The model loaded and the images run (:func:`_main`, once the output folder is made)."""
    engine = None
    try:
        engine = load_engine(variant, weights, device=args.device, precision=args.precision)
    except (OSError, CheckpointError, ValueError, RuntimeError) as e:   # (FileNotFoundError is an OSError)
        print(f"predict: cannot load {args.variant} from {args.weights}: {e}", file=sys.stderr)
        return 2
    finally:
        if engine is None:   # (not loaded, or Ctrl-C meanwhile)
            remove_made_folders(made, held)
    if engine.random_weights:
        print(_RANDOM_BANNER, file=sys.stderr)
    net = (args.input_size, args.input_size) if args.input_size else tuple(variant.net_size)
    pre = pipeline.Preprocessor(net, args.resize_method, engine.device)
    removed, _ = remove_stale_partials(out_dir)
    if removed:
        print(f"predict: removed {removed} temporary file(s) (.partial-*) that a run killed while writing left in "
              f"{out_dir} (the image it was writing got no results)", file=sys.stderr)
    failed = skipped
    for path, said, name in zip(files, shown, names):
        try:
            rgb = pipeline.read_image_file(path)
        except (ValueError, OSError) as e:   # (an OSError: one the reader did not say as its own)
            print(f"predict: {said}: not readable as an image: {_read_error(path, e)}; skipped", file=sys.stderr)
            failed += 1
            continue
        t = time.perf_counter()
        try:
            with torch.inference_mode():
                result = predict(engine, pre, rgb)
        except ValueError as e:   # an image this resize method cannot take (an extreme aspect ratio): the others go on
            print(f"predict: {said}: {e}; skipped", file=sys.stderr)
            failed += 1
            continue
        ms = (time.perf_counter() - t) * 1000.0
        try:
            written = write_outputs(out_dir, name, variant.name, rgb, result, args.absolute_depth)
        except OSError as e:   # (none of its files left: the next image may fit, e.g. after space was freed)
            print(f"predict: {said}: cannot write {e.filename or out_dir}: {_write_error(out_dir, e)}; skipped",
                  file=sys.stderr)
            failed += 1
            continue
        # images width x height, networks height x width (as input_size and the node's diagnostics): both said
        print(f"{said}: {rgb.shape[1]}x{rgb.shape[0]} (WxH), network {'x'.join(map(str, pre.input_size(*rgb.shape[:2])))} "
              f"(HxW), "
              f"{ms:.0f} ms -> {', '.join(p.name for p in written)}", flush=True)
    if engine.random_weights:
        print("predict: the outputs above come from RANDOM WEIGHTS and are meaningless", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit

    tool_exit(main())
