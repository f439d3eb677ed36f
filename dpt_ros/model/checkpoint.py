"""Checkpoint reading, verification, official <-> Hugging Face key mapping and strict loading.

Canonical names are the official isl-org/DPT ones (``pretrained.*``, ``scratch.*``, ``auxlayer.*``),
which are also :class:`~dpt_ros.model.DPT`'s own ``state_dict`` names. Hugging Face DPT names
(``dpt.*``, ``neck.*``, ``head.*``, ``auxiliary_head.*``, split q/k/v) are mapped onto them.

Rules applied when loading, never silently:

- ``pretrained.model.head.*`` (the ImageNet classifier of the timm ViT, stored in the official files,
  unused by DPT) is dropped; it is listed in :attr:`LoadReport.dropped`.
- ``auxlayer.*`` (training-only auxiliary segmentation head) is loaded when present; a segmentation
  checkpoint without it is accepted and reported in :attr:`LoadReport.absent_optional`.
- Anything else missing, unexpected or mis-shaped is a :class:`CheckpointError` listing the keys.
- A floating-point tensor holding NaN or infinite values is a :class:`CheckpointError` naming it.
- A torch.save zip whose records do not match the CRC-32s stored with them (torch.load does not compare them) is a
  :class:`CheckpointError` naming the records, unless the file was checked against its name's SHA-256 prefix.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch

from .variants import VARIANTS, Variant, get_variant

__all__ = [
    "CheckpointError",
    "LoadReport",
    "read_state_dict",
    "verify_sha256_prefix",
    "expected_sha256_prefix",
    "official_to_hf",
    "hf_to_official",
    "official_to_hf_name",
    "is_hf_state_dict",
    "describe_state_dict",
    "matching_variants",
    "load_state_dict_into",
    "load_checkpoint",
]

DROPPED_PREFIXES = ("pretrained.model.head.",)
OPTIONAL_PREFIXES = ("auxlayer.",)


class CheckpointError(ValueError):
    """A weights file that cannot be used: corrupt/truncated, unsafe, or for another architecture."""


@dataclass
class LoadReport:
    """What happened to the keys of a loaded checkpoint (official names)."""

    source_format: str = "official"
    loaded: int = 0
    dropped: list[str] = field(default_factory=list)
    absent_optional: list[str] = field(default_factory=list)
    absent_counters: list[str] = field(default_factory=list)   # BatchNorm num_batches_tracked (unused in eval)
    # what the file held that the load converted: the keys followed into its wrapper (["state_dict"]), the prefix
    # removed from every name ("module."), and how many tensors of each other dtype were cast to the model's
    wrapper: list[str] = field(default_factory=list)
    prefix: str = ""
    cast: dict[str, int] = field(default_factory=dict)

    def conversions(self) -> str:
        """'converted on load: taken from ['state_dict'], prefix 'module.' removed, 222 float16 tensors cast to
        float32', or '' for a file loaded as it is."""
        done = []
        if self.wrapper:
            done.append("taken from " + "".join(f"[{k!r}]" for k in self.wrapper))
        if self.prefix:
            done.append(f"prefix {self.prefix!r} removed")
        if self.cast:
            counts = sorted(self.cast.items(), key=lambda c: -c[1])
            done.append(" and ".join(f"{n} {t}" for t, n in counts) + " tensors cast to float32")
        return "converted on load: " + ", ".join(done) if done else ""


class _Read(dict):
    """A state dict as read from a file, with what reading it took off: ``wrapper`` (the keys followed into the
    file's wrapper) and ``prefix`` (removed from every name)."""

    wrapper: list = []
    prefix: str = ""


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

_HASH_RE = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_hash_cache: dict[tuple, str] = {}
_HASH_CACHE_SIZE = 32
_hash_lock = threading.Lock()


def expected_sha256_prefix(path: "str | os.PathLike") -> Optional[str]:
    """The SHA-256 prefix a torch.hub-style name carries (``dpt_hybrid-midas-501f0c75.pt``), or None."""
    m = _HASH_RE.search(Path(path).name)
    return m.group(1) if m else None


def file_sha256(path: "str | os.PathLike") -> str:
    """SHA-256 hex digest of a file (cached per path, size and modification time)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _hash_lock:
        while len(_hash_cache) >= _HASH_CACHE_SIZE:   # a node swapping through many files: the oldest go
            del _hash_cache[next(iter(_hash_cache))]
        _hash_cache[key] = digest
    return digest


def verify_sha256_prefix(path: "str | os.PathLike") -> Optional[str]:
    """Check a file against the hash prefix in its name; returns the prefix checked (None: no prefix).

    :raises CheckpointError: the digest does not start with the prefix (corrupt or truncated file).
    """
    prefix = expected_sha256_prefix(path)
    if prefix is None:
        return None
    digest = file_sha256(path)
    if not digest.startswith(prefix):
        other = next((o for o in VARIANTS.values()
                      if o.sha256_prefix and o.sha256_prefix != prefix and digest.startswith(o.sha256_prefix)), None)
        if other is not None:   # (another release file saved under this name: a download saved as the wrong file)
            named = next((o for o in VARIANTS.values() if o.sha256_prefix == prefix and o.checkpoint), None)
            raise CheckpointError(
                f"{path}: its SHA-256 starts with {other.sha256_prefix}, not {prefix} (from the file name): it is "
                f"{other.checkpoint}, the release file of variant {other.name!r} ({other.description}), saved under "
                f"another name. Rename it to {other.checkpoint} (and set the variant to {other.name!r} to run it)"
                + (f"; for {named.name} download {named.url}" if named is not None else "") + ".")
        size = os.path.getsize(path)
        raise CheckpointError(
            f"{path}: SHA-256 {digest[:16]}... does not start with {prefix} (from the file name): the file is "
            f"corrupt or truncated ({size} bytes). Download it again (python -m dpt_ros.tools.weights --urls). "
            f"(A name ending in -<8 or more hex digits> carries a torch.hub-style hash prefix; if -{prefix} is not "
            f"one, e.g. a date in your own file's name, rename the file.)"
        )
    return prefix


_crc_checked: dict[tuple, int] = {}


def check_zip_crcs(path: "str | os.PathLike") -> Optional[int]:
    """Compare every record of a torch.save zip (the pickle, each tensor's bytes) with the CRC-32 the zip stores for it.

    torch.load does not (PyTorch builds its zip reader without the check, and ``mmap=True`` reads records by their
    offset): a file damaged in a tensor's bytes (a flipped bit on a disk, a bad copy, same length) would load, with
    other weights. One pass over the file: about 0.15 s for DPT-Hybrid's 467 MiB on one CPU core (a SHA-256 takes
    twice that). Remembered per path, size and modification time, as :func:`file_sha256`.

    :returns: the number of records checked; None for a file that is not a zip (a legacy torch.save pickle), or one
        saved without checksums (``torch.serialization.set_crc32_options(False)`` stores 0 for each).
    :raises CheckpointError: records whose bytes do not match their CRC-32 (named), a zip directory that cannot be
        read, or the file cannot be read.
    """
    import zipfile

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _crc_checked:
            return _crc_checked[key]
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":   # (a legacy torch.save pickle: no checksums to compare with)
            return None
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: the file is damaged: the directory of its zip cannot be read "
                              f"({_clip(str(e), 80)}). Download or copy it again.") from e
    bad: list[str] = []
    with zf:
        records = [info for info in zf.infolist() if info.CRC != 0 and not info.is_dir()]
        if not records:
            return None
        for info in records:
            try:
                with zf.open(info) as f:   # (zipfile compares the CRC-32 at the record's end)
                    while f.read(1 << 22):
                        pass
            except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
                bad.append(f"{info.filename} ({_clip(str(e), 80)})" if "CRC" not in str(e) else info.filename)
            except OSError as e:   # e.g. an I/O error on a failing disk
                raise CheckpointError(f"{path}: cannot read it: {e.strerror or e} (while checking record "
                                      f"{info.filename}); copy the file to a sound disk or download it again") from e
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
        fail = "fails" if len(bad) == 1 else "fail"
        raise CheckpointError(
            f"{path}: the file is damaged: {len(bad)} of its {len(records)} zip records {fail} the CRC-32 check "
            f"against the checksums stored with them ({shown}; data/<n> hold tensors' values, data.pkl their names "
            f"and shapes): its bytes changed after it was saved (a bad download or copy, a failing disk). Download or "
            f"copy it again.")
    with _hash_lock:
        while len(_crc_checked) >= _HASH_CACHE_SIZE:
            del _crc_checked[next(iter(_crc_checked))]
        _crc_checked[key] = len(records)
    return len(records)


def dangling_link_text(path: Path) -> str:
    """' (a symbolic link to X, which does not exist: ...)' for a path that is a link to nothing, else ''."""
    try:
        if not path.is_symlink() or path.exists():
            return ""
        target = os.readlink(path)
    except OSError:
        return ""
    return (f" (a symbolic link to {target}, which does not exist: moved or deleted, or on a disk that is not mounted; "
            f"fix the link or give the file itself)")


def _not_found_message(path: Path, variant: Optional[Variant]) -> str:
    msg = f"weights file not found: {path}{dangling_link_text(path)}."
    if variant is not None and variant.url:
        msg += f" Official weights for {variant.name}: {variant.url} (save as {variant.checkpoint})"
        if variant.hf_id:
            msg += f", or the Hugging Face model {variant.hf_id} (model.safetensors)"
        msg += "; check it with: python -m dpt_ros.tools.weights --verify FILE."
    elif variant is not None:
        msg += (f" Variant {variant.name} has no released weights; for tests give random as the weights (predict "
                "--weights random, the node's depth.weights:=random; outputs are meaningless) or pick a released "
                "variant.")
    return msg


def _refuse_download_artifacts(path: Path, variant: Optional[Variant]) -> None:
    """An empty file, a Git LFS pointer or an HTML page (a failed or redirected download) saved under the
    weights' name gets an error saying so, instead of an unpickler message about a corrupt file."""
    with open(path, "rb") as f:
        head = f.read(512)
    text = head.lstrip().lower()
    if not head:
        what = "empty (0 bytes: an interrupted download, or a full disk when it was saved)"
    elif text.startswith(b"version https://git-lfs"):
        what = "a Git LFS pointer (a few bytes that stand for the file), not the weights: run `git lfs pull`"
    elif text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        what = "an HTML/XML page (an error, login or redirect page saved by a failed download), not the weights"
    else:
        return
    where = f"; official weights for {variant.name}: {variant.url}" if variant is not None and variant.url else ""
    raise CheckpointError(f"{path} is {what}. Download the file itself{where}.")


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: the index (tensor name -> shard file) of a Hugging Face snapshot whose weights are split into several files
HF_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def check_format(path: "str | os.PathLike") -> None:
    """A quick look at a weights file's first bytes (what ``depth.weights`` set on a running node gets, before the
    load in the background): an empty file, a Git LFS pointer, an HTML page, or anything that is neither a PyTorch
    checkpoint (a zip, or a legacy pickle) nor a .safetensors file (its header's length, then '{'), raises
    CheckpointError saying so. A file that passes may still fail to load (truncated, another architecture).

    :raises CheckpointError: as above. :raises OSError: the file cannot be read."""
    path = Path(path)
    _refuse_download_artifacts(path, None)
    if _is_index(path):
        for shard in _shard_files(path):
            check_format(shard)
        return
    if _content_format(path) is not None:   # whatever its name ends with: the loader goes by the content too
        return
    text = _text_start(path)
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: not a safetensors file (one starts with its header's length, then '{{'): "
                              + (f"it starts with text ({text!r})" if text else "corrupt or truncated?"))
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (a zip or pickle file) nor a .safetensors file"
                          + (f"; it starts with text ({text!r})" if text else ": corrupt, or another kind of file?"))


def _content_format(path: Path) -> Optional[str]:
    """"safetensors" or "torch" (torch.save's zip, or a legacy pickle) by a file's first bytes, else None."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if len(head) == 9 and head[8:9] == b"{" and 2 <= size <= path.stat().st_size - 8:   # header length, then JSON
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":   # (protocol 2+ pickles start with 0x80)
        return "torch"
    return None


def _text_start(path: Path) -> str:
    """The start of the first line of a file that is plainly text (not a zip or pickle), else ''."""
    try:
        with open(path, "rb") as f:
            head = f.read(40)
    except OSError:
        return ""
    if head[:2] == b"PK" or head[:1] == b"\x80" or not head:
        return ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if not all(c.isprintable() or c in "\r\n\t" for c in text):
        return ""
    return text.splitlines()[0][:30] if text.strip() else ""


#: the pickled magic number that starts torch.save's legacy (non-zip) files, whatever the pickle protocol
_TORCH_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _foreign_container(path: Path) -> str:
    """What a file that torch.load could not read is when it is another kind of container, with what to do: a zip
    that is not torch.save's (a .zip holding the checkpoint, a NumPy .npz, a TorchScript archive), or a plain
    ``pickle.dump`` file; '' else (then it is taken for a damaged checkpoint)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if head[:4] == b"PK\x03\x04":
            import zipfile

            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
            if any(n.endswith("/constants.pkl") for n in names):   # (as torch tells TorchScript from torch.save)
                return ("a TorchScript archive (torch.jit.save: a compiled model, its code with its weights), not a "
                        "checkpoint of weights; give the checkpoint it was exported from, or re-save its weights where "
                        f"it was made: torch.save(torch.jit.load({str(path)!r}).state_dict(), 'weights.pt')")
            if not names or any(n.endswith("/data.pkl") for n in names):   # (torch.save's zip: a damaged one)
                return ""
            inner = [n for n in names if n.lower().endswith(_CHECKPOINT_SUFFIXES)]
            if inner:
                return (f"a zip archive holding {', '.join(inner[:3])}, not a PyTorch checkpoint itself: unpack it "
                        f"(unzip {path}) and give the checkpoint file inside")
            if all(n.endswith(".npy") for n in names):
                return ("a NumPy .npz archive (np.savez), not a PyTorch checkpoint: re-save its arrays as tensors, "
                        f"e.g. torch.save({{k: torch.from_numpy(v) for k, v in numpy.load('{path}').items()}}, "
                        "'weights.pt')")
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            files = f"{len(names)} file{'s' if len(names) > 1 else ''}"
            return (f"a zip archive ({files}: {shown}) that is not a PyTorch checkpoint (torch.save's zip holds "
                    f"<name>/data.pkl); give the checkpoint file itself")
        if head[:1] == b"\x80" and _TORCH_LEGACY_MAGIC not in head:
            return ("a plain Python pickle (pickle.dump), not a file torch.save wrote, which torch.load cannot read; "
                    "where it was made, re-save the state dict with torch.save(state_dict, path) (unpickling a file "
                    "you do not trust runs its code)")
    except Exception:   # (an unreadable or damaged zip: said as a damaged checkpoint)
        return ""
    return ""


def _refuse_foreign_container(path: Path, exc: BaseException, v: Optional[Variant] = None) -> None:
    foreign = _foreign_container(path)
    if foreign:
        raise CheckpointError(f"{path} is {foreign}.") from exc
    text = _text_start(path)
    if text:   # (the unpickler's words about its first bytes would be noise: it is no pickle at all)
        where = f" (official weights for {v.name}: {v.url})" if v is not None and v.url else ""
        raise CheckpointError(
            f"{path} is a text file (it starts with {text!r}), not a PyTorch checkpoint (torch.save's zip or pickle) "
            f"nor a .safetensors file. Download the weights as README.md's 'Getting the official weights' says{where}, "
            f"and check the downloaded file with: python -m dpt_ros.tools.weights --verify FILE") from exc


def _is_lightning_checkpoint(path: Path) -> bool:
    """Whether a torch.save zip is a PyTorch Lightning checkpoint: its pickle (read as bytes, not unpickled) holds
    the 'pytorch-lightning_version' key Lightning's checkpoints carry."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            return pkl is not None and b"pytorch-lightning_version" in z.read(pkl)
    except Exception:   # (not a zip, or a damaged one: said as what it is by the caller)
        return False


def _load_failure_cause(exc: BaseException) -> str:
    """The cause in a torch.load error, without torch's advice to re-run with weights_only=False (which
    would execute code in an untrusted file) that precedes it since PyTorch 2.6."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _clip(" ".join(lines) or exc.__class__.__name__)


def _clip(text: str, limit: int = 300) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, with "..." where it was cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + " ..."


def resolve_weights_path(path: "str | os.PathLike") -> Path:
    """A file path as given, or for a directory (a Hugging Face snapshot) its weights file.

    :raises TypeError: ``path`` is not a string or path.
    :raises FileNotFoundError: an empty path, or a directory without ``model.safetensors`` / ``pytorch_model.bin``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"weights must be 'random' or a checkpoint file path, got {type(path).__name__}")
    if not os.fspath(path):   # (Path("") is ".": the working folder's snapshot would be loaded, or "." named)
        raise FileNotFoundError("no weights file given (an empty path); give a checkpoint file, or 'random'")
    # (os.path's expanduser, as everywhere else here: pathlib's raises RuntimeError for a ~user that is no user here,
    # which a weights parameter turned into "cannot start: RuntimeError: Could not determine home directory.")
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_dir():
        for name in HF_WEIGHT_FILES + HF_INDEX_FILES:   # (one file first; else the index of a snapshot in shards)
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p} is a directory without {' or '.join(HF_WEIGHT_FILES)} (or, for weights split "
                                f"into shards, {' or '.join(HF_INDEX_FILES)}); " + _folder_advice(p))
    return p


def _folder_advice(p: Path) -> str:
    """What to give instead of a folder that holds no Hugging Face weights: the checkpoint files in it (a weights/
    folder given for the file), or the snapshot of a Hugging Face cache folder (models--Intel--dpt-large, whose
    weights are in snapshots/<revision>/)."""
    def has_weights(d: Path) -> bool:
        return any((d / name).is_file() for name in HF_WEIGHT_FILES + HF_INDEX_FILES)

    try:
        if (p / "snapshots").is_dir():
            snaps = sorted(d for d in (p / "snapshots").iterdir() if d.is_dir() and has_weights(d))
            main = (p / "refs" / "main").read_text().strip() if (p / "refs" / "main").is_file() else ""
            snaps.sort(key=lambda d: d.name != main)   # (the revision refs/main names first)
            if snaps:
                return (f"it is a Hugging Face cache folder, whose weights are in a snapshot: give the snapshot folder, "
                        f"e.g. {snaps[0]}")
            return ("it is a Hugging Face cache folder without downloaded weights in its snapshots/ (only the config "
                    "files?): download model.safetensors too, then give the snapshot folder")
        files = sorted(f.name for f in p.iterdir() if f.is_file() and f.name.lower().endswith(_CHECKPOINT_SUFFIXES))
    except OSError:
        files = []
    if files:
        return (f"it holds {', '.join(files[:5])}{', ...' if len(files) > 5 else ''}: give the checkpoint file itself, "
                f"e.g. {p / files[0]}")
    return "pass the checkpoint file itself"


def _holds_tensors(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


#: where training scripts keep the weights in a checkpoint that holds more (optimizer, epoch, EMA copy), in this order
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


def _unwrap(obj, path: Path) -> dict:
    """The state dict in ``obj`` (a :class:`_Read`: what was taken off it said)."""
    taken: list = []
    sd = _unwrap_dict(obj, path, taken)
    out = _Read(sd)
    # (the official release layout, {"model": ..., "optimizer": ...}, is read as the official code reads it: no news)
    out.wrapper = [] if taken == ["model"] and "optimizer" in obj else taken
    for k in taken:   # the mapping the names were read from: its first one, less the returned first one
        obj = obj[k]
    if sd:
        first, now = next(iter(obj)), next(iter(sd))
        if first != now and first.endswith("." + now):
            out.prefix = first[:-len(now)]
    return out


def _unwrap_dict(obj, path: Path, taken: list) -> dict:
    # the weights in a wrapper: under a usual key (the official {"model", "optimizer"}, Lightning's "state_dict", a
    # training script's "model_state_dict", whatever else it holds: an epoch, even as a tensor) or else the one entry
    # that holds tensors ({"net": ..., "epoch": 4}); a wrapper in a wrapper too; ``taken``: the keys followed into the
    # wrapper (said in the advice to re-save, and by the load report)
    for _ in range(3):
        if not isinstance(obj, Mapping) or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = [k for k in WRAPPER_KEYS if _holds_tensors(obj.get(k))] \
            or [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]] \
            or [k for k, v in obj.items() if _holds_tensors(v)]
        if len(inner) > 1 and inner[0] not in WRAPPER_KEYS:
            shown = ", ".join(repr(k) for k in inner[:5])
            raise CheckpointError(
                f"{path}: a wrapper with tensors in several entries ({shown}) and none under "
                f"{' / '.join(map(repr, WRAPPER_KEYS))}: which are the DPT's weights is not known; re-save them alone, "
                f"e.g. torch.save(torch.load('{path}', weights_only=True)[{inner[0]!r}], 'weights.pt')")
        if not inner:
            break
        taken.append(inner[0])
        obj = obj[inner[0]]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict: non-tensor entries {bad[:10]}")
    empty = [k for k, v in obj.items() if v.is_meta]
    if empty:
        raise CheckpointError(
            f"{path}: {len(empty)} of its {len(obj)} tensors hold no values (on PyTorch's 'meta' device: {empty[0]}"
            f"{', ...' if len(empty) > 1 else ''}): it was saved from a model built without its weights (under "
            f"torch.device('meta') or an init_empty_weights()); save the state dict after the weights are loaded.")
    sd = dict(obj)
    # a prefix on every key from a training wrapper: DataParallel's "module.", or "model." (e.g. a
    # Lightning module's attribute holding the DPT); no official or Hugging Face name starts with either
    while sd and (prefix := next((p for p in ("module.", "model.") if all(k.startswith(p) for k in sd)), None)):
        sd = {k[len(prefix):]: v for k, v in sd.items()}
    # any other one name before every key, where the DPT's own names follow (the attribute a training module keeps
    # the DPT in: "net.", "depth_model.", "dpt." before official names); a Hugging Face file (neck.*, head.head.*
    # beside dpt.*) or any file whose names are DPT names as they are is left as stored
    stripped = sd
    while stripped and not _has_dpt_decoder(stripped) and all("." in k for k in stripped) \
            and len({k.split(".", 1)[0] for k in stripped}) == 1:
        stripped = {k.split(".", 1)[1]: v for k, v in stripped.items()}
    if _has_dpt_decoder(stripped) or foreign_backbone(sd):   # (another model: said so by the load's check)
        return stripped
    _refuse_dpt_beside_other_tensors(sd, path, taken)
    return sd


def _dpt_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The prefixes under which ``sd`` holds a DPT (its decoder's names follow them: ``model.``, ``ema.``,
    ``model.net.``), each with its number of tensors."""
    found = {}
    for first in dict.fromkeys(k.split(".", 1)[0] for k in sd if "." in k):
        prefix = first + "."
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        while sub and not _has_dpt_decoder(sub) and all("." in k for k in sub) \
                and len({k.split(".", 1)[0] for k in sub}) == 1:   # (a module in a module: "model.net.")
            inner = next(iter(sub)).split(".", 1)[0] + "."
            prefix, sub = prefix + inner, {k[len(inner):]: v for k, v in sub.items()}
        if _has_dpt_decoder(sub):
            found[prefix] = len(sub)
    return found


def _refuse_dpt_beside_other_tensors(sd: Mapping[str, torch.Tensor], path: Path, taken: list) -> None:
    """A training module's state dict: a DPT under a prefix beside other tensors (a loss's class weights, a second
    network, an EMA copy of the DPT) is said to be that, with how to re-save the DPT alone (else it would be called no
    DPT at all)."""
    found = _dpt_prefixes(sd)
    if not found:
        return
    prefix = next(iter(found))
    where = "".join(f"[{k!r}]" for k in taken)
    recipe = (f"sd = torch.load({str(path)!r}, weights_only=True){where}; "
              f"torch.save({{k[{len(prefix)}:]: v for k, v in sd.items() if k.startswith({prefix!r})}}, 'weights.pt')")
    if len(found) > 1:
        under = ", ".join(f"{p!r} ({n} tensors)" for p, n in found.items())
        raise CheckpointError(
            f"{path} holds {len(found)} DPTs, under {under} (a training module's model and, e.g., its EMA copy): "
            f"which to load is not known; re-save the one you want alone and give that file, e.g. (for {prefix!r}) "
            f"{recipe}")
    others = [k for k in sd if not k.startswith(prefix)]
    shown = ", ".join(others[:5]) + (f", ... ({len(others) - 5} more)" if len(others) > 5 else "")
    raise CheckpointError(
        f"{path} holds a DPT under {prefix!r} ({found[prefix]} tensors) beside {len(others)} other tensor"
        f"{'s' if len(others) > 1 else ''} ({shown}; a training module's loss weights or another network, not the "
        f"DPT's); re-save the DPT's alone and give that file, e.g. {recipe}")


def read_state_dict(path: "str | os.PathLike", variant: "Variant | str | None" = None,
                    verify_hash: bool = True) -> dict[str, torch.Tensor]:
    """Read the tensors of a checkpoint file safely (no arbitrary unpickling), memory-mapped.

    Accepts torch files (``.pt``/``.pth``/``.bin``, with or without the ``{"model", "optimizer"}``
    wrapper) and ``.safetensors``, and a Hugging Face index (``model.safetensors.index.json``) with its shards.
    Names are returned as stored (official or HF).

    :raises FileNotFoundError: no such file (the message says where official weights are).
    :raises CheckpointError: hash prefix mismatch, truncated/corrupt file, unsafe pickle, not a state dict.
    """
    path = resolve_weights_path(path)
    v = get_variant(variant) if variant is not None else None
    if _is_index(path) and path.is_file():
        return _unwrap(_read_shards(path, v), path)
    return _unwrap(_read_file(path, v, verify_hash), path)


def _is_index(path: Path) -> bool:
    return path.name.endswith(".index.json")


def _shard_files(index: Path) -> list[Path]:
    """The shard files a Hugging Face index (``model.safetensors.index.json``) names, in order, each checked to exist.

    :raises CheckpointError: not such an index. :raises FileNotFoundError: a shard is missing."""
    import json

    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
        if not weight_map or not all(isinstance(n, str) and n and "/" not in n and "\\" not in n for n in names):
            raise ValueError("no shard names")
    except OSError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a Hugging Face weights index (JSON with a 'weight_map' of tensor name -> "
                              f"shard file in its folder): {e.__class__.__name__}: {_clip(str(e))}") from e
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{index} names {len(names)} shard files, of which {len(missing)} {'is' if len(missing) == 1 else 'are'} not in "
                                f"{index.parent}: {', '.join(missing[:5])}; download the whole snapshot "
                                f"(every file the index names)")
    return [index.parent / n for n in names]


def _read_shards(index: Path, v: Optional[Variant]) -> dict[str, torch.Tensor]:
    """The tensors of a snapshot split into shards, each shard holding the tensors its index says it holds."""
    import json

    shards = _shard_files(index)
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    sd: dict[str, torch.Tensor] = {}
    for shard in shards:
        obj = _read_file(shard, v, verify_hash=False)
        if not _holds_tensors(obj):
            raise CheckpointError(f"{shard} (a shard of {index.name}): not a flat state dict (name -> tensor)")
        expected = {k for k, n in weight_map.items() if n == shard.name}
        if set(obj) != expected:
            lacks, extra = sorted(expected - set(obj)), sorted(set(obj) - expected)
            raise CheckpointError(
                f"{shard} does not hold the tensors {index.name} lists for it"
                + (f"; lacks {len(lacks)}: {', '.join(lacks[:5])}" if lacks else "")
                + (f"; holds {len(extra)} others: {', '.join(extra[:5])}" if extra else "")
                + ": the snapshot is incomplete or mixed; download the whole snapshot again")
        sd.update(obj)
    return sd


def _read_file(path: Path, v: Optional[Variant], verify_hash: bool):
    """What one checkpoint file holds (safetensors: its tensors; torch: the loaded object, before unwrapping)."""
    if not path.is_file():
        if path.exists():
            raise CheckpointError(f"{path} is not a regular file (a device, pipe or socket); give the path of the "
                                  f"checkpoint file itself")
        raise FileNotFoundError(_not_found_message(path, v))
    try:
        _refuse_download_artifacts(path, v)
        kind = _content_format(path) or ("safetensors" if path.suffix == ".safetensors" else "torch")
    except FileNotFoundError:   # removed since the check above (a cleanup, a download replacing it): not a permission
        raise FileNotFoundError(_not_found_message(path, v)) from None
    except OSError as e:   # e.g. another user's file without read permission
        raise CheckpointError(f"{path}: cannot read it: {e.strerror or e}; the node's user needs read access "
                              f"(ls -l shows who has it)") from e
    checked = verify_sha256_prefix(path) if verify_hash else None
    if kind == "safetensors":   # by its content: a .safetensors saved as .pt (or the other way round) still loads
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors is a dependency
            raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package") from e
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(
                f"{path}: cannot read the safetensors file: it is corrupt or truncated ({path.stat().st_size} bytes; "
                f"{_clip(str(e), 120)}). Download it again (its size and sha256 are on its download page)") from e
    try:
        try:
            if path.suffix == ".safetensors":   # torch.load would read it as one by its name: from a file object
                with open(path, "rb") as f:
                    obj = torch.load(f, map_location="cpu", weights_only=True)
            else:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        # (torch's advice to allow-list the class, or to load with weights_only=False, is left out: either would
        # run the file's code)
        blocked = [re.split(r"\s*(?:Please use|Check the documentation)", line.strip())[0]
                   for line in str(e).splitlines() if "global" in line.lower()]
        if blocked and _is_lightning_checkpoint(path):   # (its hyper_parameters or callbacks hold such objects)
            raise CheckpointError(
                f"{path} is a PyTorch Lightning checkpoint that holds, beside its weights, Python objects other than "
                f"tensors and plain containers (in its hyper_parameters or callbacks state), which are not unpickled "
                f"here (torch.load weights_only=True). Where it was trained, with the code that defines its module, "
                f"re-save its weights alone and give that file: torch.save(YourModule.load_from_checkpoint("
                f"{str(path)!r}).state_dict(), 'weights.pt') (the module attribute's prefix before the DPT's names, "
                f"e.g. 'model.', is taken off when it is loaded). Detail: {_clip(blocked[0])}") from e
        if blocked:  # the restricted unpickler met a class or function: code a plain state dict never holds
            raise CheckpointError(
                f"{path}: refusing to unpickle: the file holds Python objects other than tensors and plain "
                f"containers (torch.load weights_only=True). Re-save only the state dict. Detail: {_clip(blocked[0])}"
            ) from e
        _refuse_foreign_container(path, e, v)
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt, truncated, or not a PyTorch file): "
            f"{_load_failure_cause(e)}. Download it again."
        ) from e
    except Exception as e:  # any other failure of the unpickler on a damaged file (IndexError, KeyError, ...)
        _refuse_foreign_container(path, e, v)
        raise CheckpointError(
            f"{path}: cannot read the checkpoint: the file is corrupt or truncated "
            f"({e.__class__.__name__}: {_load_failure_cause(e)}). Download it again."
        ) from e
    if checked is None:   # (a file checked against its name's SHA-256 prefix: that covered every byte)
        try:   # a torch.save zip damaged in a tensor's bytes: torch.load took it as it was
            check_zip_crcs(path)
        except FileNotFoundError:   # removed since it was read
            raise FileNotFoundError(_not_found_message(path, v)) from None
    return obj


# ----------------------------------------------------------------------------------------------
# Official <-> Hugging Face names
# ----------------------------------------------------------------------------------------------

_BLOCK_MAP = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_QKV = ("query", "key", "value")


def _rename(name: str, rules) -> Optional[str]:
    """``name`` as the first of ``rules`` ((pattern, replacement) pairs) whose pattern matches all of it rewrites it:
    the replacement is a template (``\\1``: the first group) or a function of the match; None where none matches."""
    for pattern, replacement in rules:
        m = re.fullmatch(pattern, name)
        if m:
            return m.expand(replacement) if isinstance(replacement, str) else replacement(m)
    return None


def _refinenet_to_hf(m: "re.Match[str]") -> str:
    rest = m.group(2).replace("out_conv.", "projection.")
    rest = re.sub(r"resConfUnit(\d)\.", r"residual_layer\1.", rest)
    rest = re.sub(r"\.conv(\d)\.", r".convolution\1.", rest)
    rest = re.sub(r"\.bn(\d)\.", r".batch_norm\1.", rest)
    return f"neck.fusion_stage.layers.{4 - int(m.group(1))}.{rest}"


# official name -> HF name, for every key but the encoder blocks' and the patch embedding's projection (which depend
# on more than the name: see official_to_hf_name)
_OFFICIAL_TO_HF = [
    (r"pretrained\.model\.cls_token", "dpt.embeddings.cls_token"),
    (r"pretrained\.model\.pos_embed", "dpt.embeddings.position_embeddings"),
    (r"pretrained\.model\.norm\.(weight|bias)", r"dpt.layernorm.\1"),
    (r"pretrained\.model\.patch_embed\.backbone\.stem\.(conv|norm)\.(.+)",
     lambda m: f"dpt.embeddings.backbone.bit.embedder.{'convolution' if m.group(1) == 'conv' else 'norm'}.{m.group(2)}"),
    (r"pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(.+)",
     r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2.\3"),
    (r"pretrained\.act_postprocess(\d)\.0\.project\.0\.(weight|bias)",
     lambda m: f"neck.reassemble_stage.readout_projects.{int(m.group(1)) - 1}.0.{m.group(2)}"),
    (r"pretrained\.act_postprocess(\d)\.([34])\.(weight|bias)",
     lambda m: f"neck.reassemble_stage.layers.{int(m.group(1)) - 1}."
               f"{'projection' if m.group(2) == '3' else 'resize'}.{m.group(3)}"),
    (r"scratch\.layer(\d)_rn\.(weight|bias)", lambda m: f"neck.convs.{int(m.group(1)) - 1}.{m.group(2)}"),
    (r"scratch\.refinenet(\d)\.(.+)", _refinenet_to_hf),
    (r"scratch\.output_conv\.(.+)", r"head.head.\1"),
    (r"auxlayer\.(.+)", r"auxiliary_head.head.\1"),
]


def official_to_hf_name(name: str, hybrid: bool) -> "str | tuple[str, str, str]":
    """HF name(s) of one official key; a tuple of three for a fused ``attn.qkv`` tensor.

    :raises KeyError: a name with no HF counterpart (e.g. the ViT classifier head).
    """
    m = re.fullmatch(r"pretrained\.model\.blocks\.(\d+)\.(.+)\.(weight|bias)", name)
    if m:
        i, mod, kind = m.groups()
        base = f"dpt.encoder.layer.{i}."
        if mod == "attn.qkv":
            return tuple(f"{base}attention.attention.{q}.{kind}" for q in _QKV)  # type: ignore[return-value]
        if mod in _BLOCK_MAP:
            return f"{base}{_BLOCK_MAP[mod]}.{kind}"
        raise KeyError(name)
    m = re.fullmatch(r"pretrained\.model\.patch_embed\.proj\.(weight|bias)", name)
    if m:
        return ("dpt.embeddings.projection." if hybrid else "dpt.embeddings.patch_embeddings.projection.") + m.group(1)
    new = _rename(name, _OFFICIAL_TO_HF)
    if new is None:
        raise KeyError(name)
    return new


def is_hf_state_dict(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for Hugging Face DPT names, False for official names (a timm classifier's ``head.weight`` is neither)."""
    hf = sum(k.startswith(("dpt.", "neck.", "head.head.", "auxiliary_head.")) for k in sd)
    off = sum(k.startswith(("pretrained.", "scratch.", "auxlayer.")) for k in sd)
    return hf > off


def _is_hybrid(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(".backbone." in k for k in sd)   # official patch_embed.backbone.*, HF dpt.embeddings.backbone.*


def official_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official-named state dict -> HF-named (q/k/v split). The ViT classifier head is dropped."""
    hybrid = _is_hybrid(sd)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in sd.items():
        if k.startswith(DROPPED_PREFIXES):
            continue
        try:
            new = official_to_hf_name(k, hybrid)
        except KeyError:
            unknown.append(k)
            continue
        if isinstance(new, tuple):
            for name, part in zip(new, v.chunk(3, dim=0)):
                out[name] = part
        else:
            out[new] = v
    if unknown:
        raise CheckpointError(f"official_to_hf: keys with no Hugging Face counterpart: {unknown[:20]}")
    return out


def hf_to_official(sd: Mapping[str, torch.Tensor], reference: Iterable[str]) -> dict[str, torch.Tensor]:
    """HF-named state dict -> official names, for the official key set ``reference``.

    ``reference`` (e.g. ``DPT(variant).state_dict().keys()``) defines the target; every HF key must be
    consumed and every reference key found, else :class:`CheckpointError` lists the differences.
    """
    hybrid = _is_hybrid(sd)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing = []
    for k in reference:
        new = official_to_hf_name(k, hybrid)
        if isinstance(new, tuple):
            if all(n in sd for n in new):
                out[k] = torch.cat([sd[n] for n in new], dim=0)
                used.update(new)
            else:   # (the parts that are there are this tensor's: said with it, not as unexpected)
                missing.append((k, f"{k} (<- {', '.join(n for n in new if n not in sd)})"))
                used.update(n for n in new if n in sd)
        elif new in sd:
            out[k] = sd[new]
            used.add(new)
        else:
            missing.append((k, f"{k} (<- {new})"))
    unexpected = [k for k in sd if k not in used]
    # Missing optional keys and BatchNorm step counters are reported by load_state_dict_into
    hard_missing = [text for k, text in missing
                    if not k.startswith(OPTIONAL_PREFIXES) and not k.endswith(".num_batches_tracked")]
    if hard_missing or unexpected:
        raise CheckpointError(_key_error_text("Hugging Face checkpoint", hard_missing, unexpected, []))
    return out


# ----------------------------------------------------------------------------------------------
# Architecture detection
# ----------------------------------------------------------------------------------------------

#: the encoders of depth / segmentation models that are not this package's ViT or ViT-hybrid (MiDaS v2.1, MiDaS v3.1's
#: BEiT / Swin / LeViT / Next-ViT DPTs, Depth Anything, transformers' DPTs on another backbone): the short name
#: describe_state_dict gives as the backbone, and what the model is
_FOREIGN = {
    "midas_v21": "a MiDaS v2.1 model (midas_v21-*.pt, midas_v21_small-*.pt: a convolutional ResNeXt-101 or "
                 "EfficientNet-Lite3 encoder with MiDaS's decoder, no vision transformer)",
    "depth_anything": "a Depth Anything model (DINOv2 encoder under pretrained.*, its own DPT-like head under "
                      "depth_head.*)",
    "beit": "a DPT with a BEiT encoder (MiDaS v3.1 dpt_beit_*.pt, or transformers' Intel/dpt-beit-*: relative "
            "position biases, no position embedding)",
    "swin": "a DPT with a Swin / Swin v2 encoder (MiDaS v3.1 dpt_swin_*.pt / dpt_swin2_*.pt, or transformers' "
            "Intel/dpt-swinv2-*)",
    "other": "a DPT-like model with another encoder than ViT (e.g. MiDaS v3.1 dpt_levit_224.pt or "
             "dpt_next_vit_large_384.pt, or a transformers DPT on a DINOv2 or other backbone)",
}


def foreign_backbone(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The key of :data:`_FOREIGN` for a depth model whose encoder is not a ViT or ViT-hybrid (MiDaS v2.1, a MiDaS v3.1
    BEiT / Swin DPT, Depth Anything, a transformers DPT on an AutoBackbone), else None."""
    keys = list(sd)
    if any(k.startswith("depth_head.") for k in keys) and any(k.startswith("pretrained.") for k in keys):
        return "depth_anything"
    hf_backbone = [k for k in keys if k.startswith("backbone.")]   # (transformers' DPT on an AutoBackbone)
    enc = hf_backbone or [k for k in keys if k.startswith("pretrained.")]
    if not enc or not _has_dpt_decoder(sd):
        return None
    if not hf_backbone and any(k.startswith("pretrained.layer1.") for k in enc) \
            and not any(k.startswith("pretrained.model.") for k in enc):
        return "midas_v21"
    if any(re.match(r"(pretrained\.model|backbone\.encoder)\.layers\.\d+\.", k) for k in enc):
        return "swin"
    if any("relative_position_bias" in k for k in enc):
        return "beit"
    if hf_backbone or not any(k.startswith("pretrained.model.blocks.") for k in enc):
        return "other"
    return None


def _foreign_error(sd: Mapping[str, torch.Tensor], variant: Optional[Variant], source: str) -> Optional[CheckpointError]:
    """A CheckpointError saying what model ``sd`` holds where it is no ViT / ViT-hybrid DPT (see
    :func:`foreign_backbone`), which variants this package runs, and which file to use; else None."""
    kind = foreign_backbone(sd)
    if kind is None:
        return None
    msg = (f"{source} is {_FOREIGN[kind]}, which this package does not run: it runs DPT-Large (ViT-L/16: dpt_large, "
           f"dpt_large_ade20k) and DPT-Hybrid (ResNet-50 + ViT-B/16: dpt_hybrid, dpt_hybrid_kitti, dpt_hybrid_nyu, "
           f"dpt_hybrid_ade20k) checkpoints")
    if variant is not None and variant.checkpoint:
        msg += f". For {variant.name} use {variant.checkpoint} ({variant.url})"
        if variant.alt_checkpoints:
            msg += f" or MiDaS v3's {', '.join(variant.alt_checkpoints)}"
        if variant.hf_id:
            msg += f" or the Hugging Face model {variant.hf_id}"
    else:
        msg += "; python -m dpt_ros.tools.weights --urls lists their files"
    return CheckpointError(msg + ".")


def describe_state_dict(sd: Mapping[str, torch.Tensor]) -> dict:
    """Architecture facts readable from a state dict (either naming): backbone, dim, depth, task, classes."""
    foreign = foreign_backbone(sd)
    if is_hf_state_dict(sd):
        sd = {_hf_to_official_guess(k): v for k, v in sd.items()}
    facts: dict = {"backbone": foreign or ("hybrid" if _is_hybrid(sd) else "vit")}
    pe = sd.get("pretrained.model.pos_embed")
    if pe is not None and pe.ndim == 3:
        facts["embed_dim"] = int(pe.shape[-1])
    blocks = [int(m.group(1)) for k in sd if (m := re.match(r"pretrained\.model\.blocks\.(\d+)\.", k))]
    if blocks:
        facts["depth"] = max(blocks) + 1
    if "auxlayer.4.weight" in sd or "scratch.output_conv.1.weight" in sd:
        facts["task"] = "segmentation"
        w = sd.get("scratch.output_conv.4.weight")
        if w is not None:
            facts["num_classes"] = int(w.shape[0])
    elif "scratch.output_conv.0.weight" in sd:
        facts["task"] = "depth"
    ch = []
    for k in range(1, 5):
        w = sd.get(f"scratch.layer{k}_rn.weight")
        if w is not None:
            ch.append(int(w.shape[1]))
    if len(ch) == 4:
        facts["channels"] = tuple(ch)
    return facts


def _hf_to_official_guess(name: str) -> str:
    """Rough inverse of :func:`official_to_hf_name` for the keys :func:`describe_state_dict` reads."""
    rules = [
        (r"dpt\.embeddings\.position_embeddings", "pretrained.model.pos_embed"),
        (r"dpt\.embeddings\.backbone\.(.*)", r"pretrained.model.patch_embed.backbone.\1"),
        (r"dpt\.encoder\.layer\.(\d+)\.(.*)", r"pretrained.model.blocks.\1.\2"),
        (r"neck\.convs\.(\d)\.(.*)", lambda m: f"scratch.layer{int(m.group(1)) + 1}_rn.{m.group(2)}"),
        (r"head\.head\.(.*)", r"scratch.output_conv.\1"),
        (r"auxiliary_head\.head\.(.*)", r"auxlayer.\1"),
    ]
    new = _rename(name, rules)
    return name if new is None else new


def _variant_facts(v: Variant) -> dict:
    facts = {"backbone": v.backbone, "embed_dim": v.embed_dim, "depth": v.depth, "task": v.task,
             "channels": tuple(v.channels)}
    if v.task == "segmentation":
        facts["num_classes"] = v.num_classes
    return facts


def _has_dpt_decoder(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` holds a DPT's decoder (reassemble/fusion/head: official ``scratch.*``, HF ``neck.*`` /
    ``head.head.*``), which a bare ViT backbone or a timm classifier does not."""
    return any(k.startswith(("scratch.", "neck.", "head.head.")) for k in sd)


def not_dpt_error(sd: Mapping[str, torch.Tensor], source: str) -> Optional[CheckpointError]:
    if _has_dpt_decoder(sd):
        return None
    keys = list(sd)
    shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
    return CheckpointError(
        f"{source} is not a DPT checkpoint: none of its {len(keys)} tensors ({shown}) belongs to a DPT decoder "
        f"(official scratch.*, Hugging Face neck.* / head.head.*); a ViT backbone or classifier alone cannot run. "
        f"Give a DPT checkpoint (python -m dpt_ros.tools.weights --urls lists the official ones).")


def matching_variants(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Registry variants whose architecture agrees with every fact readable from ``sd`` (none when ``sd`` is not a
    DPT at all)."""
    if not _has_dpt_decoder(sd):
        return []
    facts = describe_state_dict(sd)
    return [name for name, v in VARIANTS.items() if _fits(facts, v)]


def _fits(facts: dict, variant: Variant) -> bool:
    """Whether every architecture fact read from a state dict (:func:`describe_state_dict`) is ``variant``'s."""
    vf = _variant_facts(variant)
    return all(vf[k] == val for k, val in facts.items() if k in vf)


def _describe(facts: dict) -> str:
    parts = [f"{facts.get('backbone', '?')} backbone"]
    if "embed_dim" in facts:
        parts.append(f"width {facts['embed_dim']}")
    if "depth" in facts:
        parts.append(f"{facts['depth']} blocks")
    if "task" in facts:
        parts.append(facts["task"] + (f" ({facts['num_classes']} classes)" if "num_classes" in facts else ""))
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# Strict loading
# ----------------------------------------------------------------------------------------------

def _key_error_text(what: str, missing: list, unexpected: list, mis_shaped: list, mis_typed: tuple = (),
                    limit: int = 25) -> str:
    lines = [f"{what} does not match the model:"]
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped),
                        ("not floating point", mis_typed)):
        if keys:
            shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
            lines.append(f"  {len(keys)} {title}: {shown}")
    return "\n".join(lines)


def _wrong_variant_error(sd: Mapping[str, torch.Tensor], variant: Variant, source: str) -> Optional[CheckpointError]:
    facts = describe_state_dict(sd)
    if _fits(facts, variant):
        return None
    vf = _variant_facts(variant)
    cands = matching_variants(sd)
    msg = (f"{source} holds a different DPT ({_describe(facts)}) than variant {variant.name!r} "
           f"({_describe(vf)}).")
    others = {VARIANTS[c].task for c in cands} - {variant.task}
    if cands and others == {VARIANTS[c].task for c in cands}:   # (a depth checkpoint given for segmentation, or
        other = others.pop()                                     # the other way: no variant of this task fits it)
        msg += (f" It is a {other} model's checkpoint (variant(s): {', '.join(cands)}), not a {variant.task} "
                f"model's: use it for {other} (the node's {other}.weights, with {other}.variant {cands[0]})")
    elif cands:
        msg += f" It matches variant(s): {', '.join(cands)}; set the variant to one of them"
    else:
        msg += " It matches no registered variant"
    if variant.checkpoint:
        msg += f", or use {variant.checkpoint} ({variant.url}) for {variant.name}"
    return CheckpointError(msg + ".")


def _non_finite_error(sd: Mapping[str, torch.Tensor], source: str, limit: int = 5) -> Optional[CheckpointError]:
    """A CheckpointError naming the first tensors of ``sd`` that hold NaN or infinite values (a damaged file, or weights
    saved after the training diverged: every output would be NaN), else None. One torch.isfinite pass per tensor."""
    bad = [k for k, t in sd.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if not bad:
        return None
    shown = []
    for k in bad[:limit]:
        t = sd[k]
        nan = int(torch.isnan(t).sum())
        shown.append(f"{k} ({nan} NaN, {int(torch.isinf(t).sum())} infinite of {t.numel()})")
    more = f", ... ({len(bad) - limit} more)" if len(bad) > limit else ""
    return CheckpointError(
        f"{source}: {len(bad)} tensor{'s' if len(bad) > 1 else ''} hold{'' if len(bad) > 1 else 's'} NaN or infinite "
        f"values: {', '.join(shown)}{more}; every output would be NaN. The file is damaged or was saved after the "
        f"training diverged: download it again, or use an earlier checkpoint of the training.")


POS_EMBED_KEY = "pretrained.model.pos_embed"


def _pos_grid_advice(sd: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], variant: Variant) -> str:
    """What a position embedding of another grid is (a model fine-tuned at another input size) and what to do; ''
    when the file's position embedding has the model's shape (or another width: another architecture)."""
    pe, ref = sd.get(POS_EMBED_KEY), own.get(POS_EMBED_KEY)
    if pe is None or ref is None or pe.shape == ref.shape or pe.ndim != 3 or pe.shape[-1] != ref.shape[-1]:
        return ""
    n, g, p = pe.shape[1] - 1, variant.pos_grid, variant.patch_size
    side = int(round(n ** 0.5))
    ours = f"the {g} x {g} grid of variant {variant.name} (the released models were trained at {g * p} x {g * p})"
    if side * side != n or side < 1:
        return (f"\n{POS_EMBED_KEY} holds {n} grid positions (and the class token), no square grid; this loader takes "
                f"{ours}, which the model resizes to every input size.")
    return (f"\n{POS_EMBED_KEY} holds the position embeddings of a {side} x {side} grid: a model trained or fine-tuned "
            f"at {side * p} x {side * p} pixels; this loader takes {ours}, which the model resizes (bilinear) to every "
            f"input size, as the official and Hugging Face DPT code load only the grid of their configured size. To run "
            f"this one, resample its grid to {g} x {g} and re-save the file, e.g. sd[{POS_EMBED_KEY!r}] = "
            f"dpt_ros.model.backbone.resize_pos_embed(sd[{POS_EMBED_KEY!r}], ({g}, {g}), {side}) (for a Hugging Face "
            f"file: 'dpt.embeddings.position_embeddings'), then run it at input_size {side * p}, where the model resizes "
            f"it back (the round trip smooths the embedding slightly: compare its outputs with your training code's).")


def load_state_dict_into(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
                         assign: bool = False) -> LoadReport:
    """Strictly load an official- or HF-named state dict into a :class:`~dpt_ros.model.DPT`.

    :param assign: keep the given tensors (e.g. memory-mapped) instead of copying into the model's.
    :raises CheckpointError: wrong variant (with the matching one named), key/shape differences listed, or tensors
        holding NaN or infinite values named.
    """
    variant: Variant = model.variant
    err = _foreign_error(sd, variant, source) or not_dpt_error(sd, source) or _wrong_variant_error(sd, variant, source)
    if err is not None:
        raise err
    report = LoadReport()
    own = model.state_dict()
    if is_hf_state_dict(sd):
        report.source_format = "huggingface"
        try:
            sd = hf_to_official(sd, own.keys())
        except CheckpointError as e:   # (it names no file)
            raise CheckpointError(f"{source} (variant {variant.name}): {e}") from None
    sd = dict(sd)
    for k in list(sd):
        if k.startswith(DROPPED_PREFIXES):
            report.dropped.append(k)
            del sd[k]
    missing = [k for k in own if k not in sd]
    # a BatchNorm's step counter only matters for training with momentum=None: a file saved without
    # these buffers (some exporters drop them) holds every tensor inference needs
    report.absent_counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    report.absent_optional = [k for k in missing if k.startswith(OPTIONAL_PREFIXES) and k not in report.absent_counters]
    missing = [k for k in missing if not k.startswith(OPTIONAL_PREFIXES) and k not in report.absent_counters]
    unexpected = [k for k in sd if k not in own]
    mis_shaped = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sd if k in own and sd[k].shape != own[k].shape]
    # weights are floating point (a file's fp16 / bf16 ones are taken as fp32, the model's own precision until an
    # Engine casts it once: the hybrid's weight standardisation is folded in fp32 first)
    mis_typed = [f"{k} {str(sd[k].dtype).replace('torch.', '')}" for k in sd
                 if k in own and own[k].is_floating_point() and not sd[k].is_floating_point()]
    if missing or unexpected or mis_shaped or mis_typed:
        raise CheckpointError(_key_error_text(f"{source} (variant {variant.name})", missing, unexpected, mis_shaped,
                                              mis_typed) + _pos_grid_advice(sd, own, variant))
    err = _non_finite_error(sd, f"{source} (variant {variant.name})")
    if err is not None:
        raise err
    for k in sd:
        if own[k].is_floating_point() and sd[k].dtype != own[k].dtype:
            t = str(sd[k].dtype).replace("torch.", "")
            report.cast[t] = report.cast.get(t, 0) + 1
            sd[k] = sd[k].to(own[k].dtype)
    loaded = len(sd)
    for k in report.absent_counters:
        sd[k] = torch.zeros(own[k].shape, dtype=own[k].dtype) if own[k].is_meta else own[k].clone()
    if report.absent_optional and assign:
        # Modules built on the meta device need real tensors for the keys the file lacks.
        for k in report.absent_optional:
            sd[k] = torch.zeros(own[k].shape, dtype=own[k].dtype) if own[k].is_meta else own[k]
    model.load_state_dict(sd, strict=not report.absent_optional, assign=assign)
    report.loaded = loaded
    return report


def load_checkpoint(path: "str | os.PathLike", variant: "Variant | str", verify_hash: bool = True) -> torch.nn.Module:
    """Build the variant's :class:`~dpt_ros.model.DPT` and strictly load a checkpoint file into it.

    The model is built on the meta device and takes the file's (memory-mapped) tensors, so loading
    needs little more RAM than the tensors themselves. ``model.load_report`` tells what was dropped.
    """
    from .dpt import DPT

    v = get_variant(variant)
    path = resolve_weights_path(path)
    sd = read_state_dict(path, v, verify_hash=verify_hash)
    _check_release_name(path, v, sd)
    if verify_hash:
        _check_release_digest(path, v)
    _check_recorded_variant(path, v)
    _check_hf_release(path, v, sd)
    with torch.device("meta"):
        model = DPT(v)
    report = load_state_dict_into(model, sd, source=str(path), assign=True)
    report.wrapper, report.prefix = list(getattr(sd, "wrapper", [])), getattr(sd, "prefix", "")
    # Non-persistent buffers (none today) and BN tracking counters stay consistent on the CPU.
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            raise CheckpointError(f"{path}: buffer {name} was not provided by the checkpoint")
    model.load_report = report
    model.weights_mapped = True  # tensors may be views of the memory-mapped file (Engine copies them)
    return model


#: safetensors metadata key under which ``weights --convert`` records the variant it loaded the file as: a KITTI/NYU
#: release converted (and so renamed) is still refused as the relative variant of the same architecture
VARIANT_METADATA_KEY = "dpt_ros.variant"


def _check_recorded_variant(path: Path, variant: Variant) -> None:
    if _content_format(path) != "safetensors":
        return
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        recorded = (f.metadata() or {}).get(VARIANT_METADATA_KEY)
    if recorded and recorded != variant.name and recorded in VARIANTS:
        raise CheckpointError(
            f"{path} holds the weights of variant {recorded!r} ({VARIANTS[recorded].description}; recorded in the file "
            f"when it was converted), but variant {variant.name!r} was requested; set the variant to {recorded!r}.")


def _check_hf_release(path: Path, variant: Variant, sd: Mapping[str, torch.Tensor]) -> None:
    """Hugging Face-named weights loaded as a variant that has no Hugging Face release, where one of the same
    architecture has (Intel/dpt-hybrid-midas, relative depth, given as the metric dpt_hybrid_kitti / dpt_hybrid_nyu:
    the same tensors, wrong metres, and no SHA-256 of a release file to tell them by) are refused, unless
    ``weights --convert`` recorded the variant in the file (a .safetensors file converted as that variant)."""
    if variant.hf_id or not is_hf_state_dict(sd):
        return
    facts = _variant_facts(variant)
    twin = next((o for o in VARIANTS.values() if o.hf_id and o.name != variant.name and _variant_facts(o) == facts),
                None)
    if twin is None:
        return
    if _content_format(path) == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get(VARIANT_METADATA_KEY) == variant.name:
                return
    raise CheckpointError(
        f"{path} holds Hugging Face (transformers) DPT weights of the architecture whose only Hugging Face release is "
        f"{twin.hf_id}, variant {twin.name!r} ({twin.description}); variant {variant.name!r} ({variant.description}) "
        f"has no Hugging Face release, and run as it these weights would give wrong values. Set the variant to "
        f"{twin.name!r}, or for {variant.name} use {variant.checkpoint} ({variant.url}). (Weights of {variant.name} "
        f"converted into a .safetensors file record the variant, and load as it: python -m dpt_ros.tools.weights "
        f"--convert {variant.checkpoint} DST --variant {variant.name}; converted so, these weights would still be "
        f"{twin.name}'s.)")


def _check_release_name(path: Path, variant: Variant, sd: Mapping[str, torch.Tensor]) -> None:
    """A file named like the release file (DPT or MiDaS v3 name) of *another* variant is refused. Where its tensors
    are of that variant's architecture, it is taken for that variant's release (KITTI vs relative: the same
    architecture, the name the only tell) and the variant is to be set to it; where they are not (DPT-Hybrid weights
    saved as ``dpt_large_384.pt``), the name is wrong for the file, and it is to be renamed (setting the variant to
    the name's would be refused by the architecture check). A file that is no DPT, or a DPT of neither the name's,
    the requested nor any registered variant, is left to the architecture check, which says what it holds."""
    name = path.name
    if name == variant.checkpoint or name in variant.alt_checkpoints:
        return
    other = next((o for o in VARIANTS.values()
                  if o.name != variant.name and (name == o.checkpoint or name in o.alt_checkpoints)), None)
    if other is None or not _has_dpt_decoder(sd):
        return
    facts = describe_state_dict(sd)
    if _fits(facts, other):
        raise CheckpointError(
            f"{path} is the release file of variant {other.name!r} ({other.description}), but variant "
            f"{variant.name!r} was requested; set the variant to {other.name!r}"
            + (f" or use {variant.checkpoint}" if variant.checkpoint else "") + "."
        )
    url = other.url if name == other.checkpoint else other.alt_urls[other.alt_checkpoints.index(name)]
    named = (f"{path} is named like the release file of variant {other.name!r} ({other.description}), but its "
             f"tensors are not that variant's: they have the architecture")
    rename = "Rename it (to a name that is no other variant's release file)"
    instead = f"or, for {other.name!r}, download its release file: {url}."
    if _fits(facts, variant):
        raise CheckpointError(f"{named} of variant {variant.name!r} ({_describe(facts)}). {rename} to load it as "
                              f"{variant.name!r}, {instead}")
    cands = matching_variants(sd)
    if cands:   # (neither the name's nor the requested variant's: the whole remedy in one message)
        raise CheckpointError(f"{named} of variant(s) {', '.join(cands)} ({_describe(facts)}), not of {variant.name!r} "
                              f"either. {rename} and set the variant to one of them, {instead}")


def _check_release_digest(path: Path, variant: Variant) -> None:
    """A renamed release file of another variant with the same architecture (KITTI or NYU weights saved as
    ``hybrid.pt`` and loaded as the relative ``dpt_hybrid``: the same tensors, other outputs) is refused by its
    SHA-256, which starts with that release's prefix. Only files whose name carries no prefix (one that does was
    checked against it) and only variants with such a twin (the hybrid depth ones) are hashed."""
    if expected_sha256_prefix(path) is not None:
        return
    facts = _variant_facts(variant)
    twins = [o for o in VARIANTS.values()
             if o.name != variant.name and o.sha256_prefix and _variant_facts(o) == facts]
    if not twins:
        return
    digest = file_sha256(path)
    if variant.sha256_prefix and digest.startswith(variant.sha256_prefix):
        return
    for other in twins:
        if digest.startswith(other.sha256_prefix):
            raise CheckpointError(
                f"{path} is the release file of variant {other.name!r} ({other.description}: its SHA-256 starts with "
                f"{other.sha256_prefix}, as {other.checkpoint}), renamed, but variant {variant.name!r} was requested; "
                f"set the variant to {other.name!r}" + (f" or use {variant.checkpoint}" if variant.checkpoint else "")
                + ".")
