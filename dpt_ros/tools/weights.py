"""Weights helper: list official download URLs, verify a downloaded checkpoint, convert key names.

Nothing is downloaded here (use a browser, curl or wget on another machine)::

    python -m dpt_ros.tools.weights --urls
    python -m dpt_ros.tools.weights --verify weights/dpt_hybrid-midas-501f0c75.pt [--variant dpt_hybrid]
    python -m dpt_ros.tools.weights --convert dpt_large-midas-2f21e586.pt dpt_large.safetensors \\
        --variant dpt_large --to hf

``--convert`` writes DST whole or not at all (a temporary file in DST's folder, ``.<DST name>.partial-<pid>.tmp``,
shortened to ``.<head>~<digest><extension>.partial-<pid>.tmp`` where that is longer than the file system takes,
then renamed over DST), never over SRC itself nor a folder, and only into a folder that exists; a DST name longer
than the file system takes is said, with its length and the limit, before SRC is read. A conversion killed
outright (SIGKILL, a power cut) leaves its temporary; the next ``--convert`` to the same DST removes it (never one
that a running conversion is writing: each holds a lock on its own) and says so.

Exit status: 0 = OK, 1 = the file failed a check (or DST could not be written), 2 = usage error, among them a FILE
or SRC that names no checkpoint file (not there, a symbolic link to nothing, a folder without weights, a pipe):
nothing was checked; a FILE not there is said with where to download the weights. 141 = the reader of
``--urls`` went away (``--urls | head -3``: quietly, as a program that SIGPIPE ends), or of the report of a check
that passed (said on stderr); a report that could not be written otherwise (a full disk) is a 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Optional

from dpt_ros.model import VARIANTS, CheckpointError, Variant, get_variant
from dpt_ros.ros.console import write_last
from dpt_ros.tools import (PARTIAL_SUFFIX_PATTERN, create_locked, is_temporary, name_max, name_too_long,
                           output_folder_error, partial_suffix, remove_unheld, shortened_tail, temporary_name)
from dpt_ros.tools.options import ToolParser


def urls_text(variant: Optional[str] = None) -> str:
    """The download table: every variant's row, or ``variant``'s only."""
    # network sizes height x width, as input_size, the diagnostics (net_size, net_input) and bench_model give them
    lines = [f"{'variant':<19} {'task':<13} {'net HxW':<9} {'sha256':<9} file / URL"]
    for v in VARIANTS.values() if variant is None else (get_variant(variant),):
        size = f"{v.net_size[0]}x{v.net_size[1]}"
        if v.url:
            lines.append(f"{v.name:<19} {v.task:<13} {size:<9} {v.sha256_prefix:<9} {v.url}")
            for alt in v.alt_urls:
                lines.append(f"{'':<19} {'':<13} {'':<9} {'':<9} or MiDaS v3: {alt}")
            if v.hf_id:
                lines.append(f"{'':<19} {'':<13} {'':<9} {'':<9} or Hugging Face: https://huggingface.co/{v.hf_id}")
        else:
            lines.append(f"{v.name:<19} {v.task:<13} {size:<9} {'-':<9} (no released weights: architecture only)")
    return "\n".join(lines)


def verify(path: Path, variant: Optional[str], lines: Optional[list[str]] = None) -> str:
    """Check a file: hash prefix (from its name; informational against the variant's release otherwise; a torch.save
    zip's CRC-32s), readability, architecture.

    :param lines: the report is appended here as it is found (so a caller can show it after a failure).
    :returns: the report. :raises CheckpointError, FileNotFoundError: on failure.
    """
    from dpt_ros.model.checkpoint import (
        _check_release_digest,
        _foreign_error,
        _is_index,
        _shard_files,
        describe_state_dict,
        file_sha256,
        load_checkpoint,
        matching_variants,
        not_dpt_error,
        read_state_dict,
        resolve_weights_path,
    )

    why = source_problem(path)
    if why:
        raise FileNotFoundError(why)
    path = resolve_weights_path(path)  # ~ expanded; a Hugging Face snapshot folder -> its weights file, as the loader does
    lines = [] if lines is None else lines
    v = get_variant(variant) if variant else None
    if _is_index(path):
        # a snapshot in shards: the weights are the shards' bytes (the index is a small JSON file), so their sizes
        # and hashes are what the snapshot's download page lists and a user compares
        shards = _shard_files(path)
        sizes = [s.stat().st_size for s in shards]
        lines.append(f"file: {path} (the index of {len(shards)} shards, {sum(sizes) / 2**20:.1f} MiB in all)")
        for shard, size in zip(shards, sizes):
            lines.append(f"shard: {shard.name} ({size / 2**20:.1f} MiB) sha256: {file_sha256(shard)}")
        lines.append("hash prefix: none to check (shard names carry none; compare each shard's sha256 with the "
                     "one its download page lists)")
    else:
        _verify_file_hash(path, v, lines)
    sd = read_state_dict(path, verify_hash=False)
    facts = describe_state_dict(sd)
    cands = matching_variants(sd)
    lines.append(f"tensors: {len(sd)}; architecture: {facts}")
    lines.append(f"matches variant(s): {', '.join(cands) if cands else 'none'}")
    err = _foreign_error(sd, v, str(path)) or not_dpt_error(sd, str(path))
    if err is not None:
        raise err
    if v is not None:
        model = load_checkpoint(path, v, verify_hash=False)
        if not _is_index(path):   # (a release is one file)
            _check_release_digest(path, v)   # a renamed release file of a same-architecture variant (hashed above)
        said = v.name
    else:
        # no --variant: the strict load as the variant the architecture matches decides, as the node's would (a
        # missing tensor, a NaN one); of several of one architecture (the hybrid depth variants) the first that
        # takes the file (a converted KITTI file is refused as the relative one), else the first one's refusal
        if not cands:   # (the loader would refuse it as every variant; the line above says its architecture)
            raise CheckpointError(f"{path} is a DPT of none of this package's variants ({', '.join(VARIANTS)}): the "
                                  "node refuses it as any of them; --variant NAME says how it differs from NAME")
        model = first = None
        for name in cands:
            try:
                model = load_checkpoint(path, name, verify_hash=False)
                break
            except CheckpointError as e:
                first = first or e
        if first is not None and model is None:
            raise first
        said = f"{name} (no --variant: the first matching variant that takes it)"
    if model is not None:
        rep = model.load_report
        lines.append(f"strict load as {said}: OK ({rep.loaded} tensors, {rep.source_format} names"
                     + (f", dropped {len(rep.dropped)} unused classifier tensors" if rep.dropped else "")
                     + (f", no auxiliary head ({len(rep.absent_optional)} tensors)" if rep.absent_optional else "")
                     + (f", {len(rep.absent_counters)} BatchNorm step counters absent" if rep.absent_counters else "")
                     + (f"; {rep.conversions()}" if rep.conversions() else "") + ")")
    return "\n".join(lines)


def _verify_file_hash(path: Path, v: Optional[Variant], lines: list[str]) -> None:
    """The report's hash lines for one checkpoint file: its SHA-256, checked against the prefix its name carries,
    else compared (informational) with the variant's release file, and a torch.save zip's records checked against the
    CRC-32s stored with them.

    :raises CheckpointError: the name's prefix does not match, or a record its CRC-32."""
    from dpt_ros.model.checkpoint import check_zip_crcs, expected_sha256_prefix, file_sha256, verify_sha256_prefix

    lines.append(f"file: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    digest = file_sha256(path)
    lines.append(f"sha256: {digest}")
    prefix = expected_sha256_prefix(path)
    if prefix is None and v is not None and v.sha256_prefix:
        # a name without a hash: a MiDaS v3 name, a renamed release file, or the user's own (fine-tuned)
        # weights; as the node does, only the architecture check below decides
        same = digest.startswith(v.sha256_prefix)
        what = (f"the MiDaS v3 name {path.name}" if path.name in v.alt_checkpoints else
                "a file name without a hash: a renamed download that differs is corrupt; your own weights differ")
        lines.append(f"hash: {'same bytes as' if same else 'differs from'} the DPT release file {v.checkpoint} "
                     f"(informational for {what})")
    if prefix:
        verify_sha256_prefix(path)   # (the digest above is remembered: not hashed twice)
        lines.append(f"hash prefix {prefix}: OK")
    elif not any(line.startswith("hash:") for line in lines):
        lines.append("hash prefix: none to check (file name carries none)")
    if not prefix:   # (a digest checked against the name's prefix covered every byte)
        records = check_zip_crcs(path)   # raises CheckpointError naming the damaged records
        if records:
            lines.append(f"zip CRC-32s: OK ({records} records hold the bytes torch.save wrote)")


def convert(src: Path, dst: Path, variant: str, to: str) -> str:
    """Re-save a checkpoint with official or HF names (.safetensors or .pt by the destination suffix), fp32; a
    .safetensors file records the variant, which loading it as another variant refuses.

    :raises FileNotFoundError: ``src`` names no file (no errno: :func:`source_problem`), or no folder for ``dst``
        (errno ENOENT).
    :raises ValueError: ``dst`` is ``src``. :raises CheckpointError: ``src`` cannot be loaded as ``variant``.
    :raises IsADirectoryError: ``dst`` is a folder (before ``src`` is read).
    :raises OSError: ``dst`` cannot be written (then it is left as it was)."""
    import torch

    from dpt_ros.model import official_to_hf
    from dpt_ros.model.checkpoint import load_checkpoint, resolve_weights_path

    why = source_problem(src)   # (the loader's message would add where a variant's release weights are: no use here)
    if why:
        raise FileNotFoundError(why)
    src = resolve_weights_path(src)   # ~ expanded; a Hugging Face snapshot folder -> its weights file
    same = same_file_error(src, dst)
    if same:
        raise ValueError(same)
    target = Path(os.path.realpath(Path(dst).expanduser()))   # a symlink: the file it names is replaced, the link kept
    if not target.parent.exists():
        # (an OSError of the system's kind: reported as the destination's; no folders are made on a typo's word)
        raise FileNotFoundError(errno.ENOENT, f"the folder {target.parent} does not exist; create it first "
                                              f"(mkdir -p {target.parent}) or give a DST in an existing folder")
    too_long = name_too_long(target.parent, target.name)
    if too_long:   # (said before SRC is read; its temporary's name is shortened to fit, the file's own cannot be)
        raise OSError(errno.ENAMETOOLONG, f"{too_long}: give DST a shorter file name", str(dst))
    if target.is_dir():   # (else found by the rename, after the whole conversion: "Is a directory")
        name = "model.safetensors" if to == "hf" else f"{variant}.pt"
        raise IsADirectoryError(errno.EISDIR, f"{dst} is a folder; give DST as a file name, e.g. {Path(dst) / name}")
    model = load_checkpoint(src, get_variant(variant))
    rep = model.load_report
    absent = set(rep.absent_optional) | set(rep.absent_counters)   # what the model filled in: not the file's
    sd = {k: t.contiguous() for k, t in model.state_dict().items() if k not in absent}
    if to == "hf":
        sd = official_to_hf(sd)
    sd = {k: t.clone() for k, t in sd.items()}  # no shared storage (q/k/v views) for safetensors
    # a temporary file in the destination's folder, renamed over it once complete: an interrupted or failed write
    # (Ctrl-C, a full disk) leaves DST as it was, and no temporary behind (a destination it cannot write is an
    # OSError, reported as such); one that a conversion killed outright left (its lock gone with it) is removed first
    # (.<DST name>.partial-<pid>.tmp; shortened where DST's name fits the file system but that is too long)
    suffix = partial_suffix()
    tmp = target.parent / temporary_name(".", target.name, suffix, name_max(target.parent))

    def ours(name: str) -> bool:   # (an earlier version's, mkstemp's .<DST name>.<random>.tmp, took no lock)
        return (name.startswith(f".{target.name}.") and name.endswith(".tmp")) or locked_kind(name)

    def locked_kind(name: str) -> bool:
        return is_temporary(name, target.name, r"\.", PARTIAL_SUFFIX_PATTERN)

    removed, _ = remove_unheld(target.parent, ours, lambda name: not locked_kind(name))
    shown = f".{target.name}.*.tmp" if tmp.name == f".{target.name}{suffix}" \
        else f".*{shortened_tail(target.name)}.partial-*.tmp"
    notice = (f"; removed {removed} temporary file(s) ({shown}) that a conversion killed while writing left in "
              f"{target.parent}") if removed else ""
    fd = create_locked(tmp)   # (held until the rename: a conversion starting meanwhile leaves it alone)
    try:
        with os.fdopen(fd, "wb") as f:
            if dst.suffix == ".safetensors":
                from safetensors.torch import save

                from dpt_ros.model.checkpoint import VARIANT_METADATA_KEY

                # the variant goes with the weights (a renamed KITTI/NYU file is not taken for relative depth);
                # "format" is what transformers requires of safetensors metadata
                f.write(save(sd, metadata={"format": "pt", VARIANT_METADATA_KEY: model.variant.name}))
            else:
                try:
                    torch.save(sd, f)
                except RuntimeError as e:   # (torch's zip writer, closed after a write failed, says only "unexpected
                    if isinstance(e.__context__, OSError):   # pos": the system's error, a full disk, EFBIG, is said)
                        raise e.__context__ from None
                    raise
            f.flush()
            os.fsync(f.fileno())
            # what open() would have given (the node's user reads it), also over a stale file of a pid used again
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.replace(tmp, target)   # (before the descriptor, and so the lock, is closed)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return f"wrote {dst} ({len(sd)} tensors, {to} names){notice}"


def source_problem(path: Path) -> str:
    """Why ``path`` (``--verify``'s FILE, ``--convert``'s SRC) names no checkpoint file to read, '' when it names one:
    no such file (a symbolic link to nothing said to be one), an empty path, a folder without weights, or not a
    regular file (a pipe or device that reading would block on)."""
    from dpt_ros.model.checkpoint import dangling_link_text, resolve_weights_path

    if not os.fspath(path):   # (the loader's words would offer 'random', no file to check or convert)
        return "no file given (an empty path); give a checkpoint file"
    try:
        path = resolve_weights_path(path)   # ~ expanded; a Hugging Face snapshot folder -> its weights file
    except FileNotFoundError as e:   # (a folder without weights)
        return str(e)
    if path.is_file():
        return ""
    return f"not a regular file: {path}" if path.exists() else f"no such file: {path}{dangling_link_text(path)}"


def download_hint(path: Path, variant: Optional[str]) -> str:
    """Where to get the weights a missing ``path`` was to hold: the release URL of ``variant`` or of the variant
    whose release file ``path`` is named after, and the ``--urls`` list (as the node's own missing-weights message
    gives the URL)."""
    v = get_variant(variant) if variant else next(
        (v for v in VARIANTS.values() if v.checkpoint and Path(path).name == v.checkpoint), None)
    urls = "python -m dpt_ros.tools.weights --urls lists the official weights of every variant"
    if v is not None and v.url:
        return f"download it first: the official {v.name} weights are {v.url} ({urls})"
    return f"download it first ({urls})"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def same_file_error(src: Path, dst: Path) -> str:
    """Why ``--convert SRC DST`` would overwrite its own source ('' when it would not): DST is SRC under any
    spelling (``./a.pt``, ``~``, a symlink or hard link to it, the weights file of a snapshot folder SRC)."""
    from dpt_ros.model.checkpoint import resolve_weights_path

    try:
        src, dst = resolve_weights_path(src), Path(dst).expanduser()
        same = dst.exists() and os.path.samefile(src, dst)
    except OSError:   # (SRC missing or unreadable: said by the loader)
        return ""
    if not same:
        return ""
    return (f"--convert: DST {dst} is the same file as SRC {src} (converting would overwrite the source); give "
            f"another DST, e.g. {src.with_name(src.stem + '_converted' + (dst.suffix or '.pt'))}")


def _write_error(dst: Path, e: OSError) -> str:
    """Why ``--convert`` could not write ``dst`` (``e``), and what to do: ``output_folder_error``'s words, as the other
    tools' output files are said (a full disk or quota, a file larger than the file size limit, EFBIG, with the limit
    and ``ulimit -f``; a read-only file system; no permission, with the owner and mode), where the system says why
    (its own words); :func:`convert`'s own (a folder not there, a name too long, DST a folder) as it says them."""
    if e.errno is None or e.strerror != os.strerror(e.errno) or e.errno == errno.ENOENT:
        return str(e.strerror or e)
    return output_folder_error(Path(os.path.abspath(dst.expanduser())), e, file=True, option="DST")


def main(argv: Optional[list[str]] = None) -> int:
    ap = ToolParser(description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--urls", action="store_true",
                   help="print official download URLs and hash prefixes (with --variant: that variant's only)")
    g.add_argument("--verify", metavar="FILE", help="check a checkpoint file")
    g.add_argument("--convert", nargs=2, metavar=("SRC", "DST"), help="re-save with other key names")
    ap.add_argument("--variant", choices=sorted(VARIANTS),
                    help="expected variant (strict load check; --verify without it: the one the architecture matches)")
    ap.add_argument("--to", choices=("hf", "official"), help="names for --convert (default hf)")
    args = ap.parse_args(argv)
    if args.to is not None and not args.convert:   # (it was taken and ignored)
        ap.error(f"--to names the keys --convert writes; --{'urls' if args.urls else 'verify'} writes no file")
    if args.urls:
        return write_last(urls_text(args.variant) + "\n")
    if args.convert and not args.variant:
        ap.error("--convert needs --variant")
    if args.convert and not args.convert[1]:   # (Path('') is the working folder)
        ap.error("--convert: DST: no file given (an empty path); give the file to write, e.g. "
                 f"{'model.safetensors' if (args.to or 'hf') == 'hf' else args.variant + '.pt'}")
    source = args.verify if args.verify is not None else args.convert[0]
    why = source_problem(source)
    if why:   # (a usage error, as the other tools' --weights that names no file: nothing was checked)
        if args.verify is None:
            ap.error(f"--convert: SRC: {why}")
        if source and not os.path.lexists(os.path.expanduser(source)):   # (not a link to nothing, a folder, a pipe: said so)
            why += f"; {download_hint(Path(source), args.variant)}"
        ap.error(f"--verify: {why}")
    report: list[str] = []
    try:
        if args.verify is not None:
            verify(Path(args.verify), args.variant, lines=report)
            print("\n".join(report))
        else:
            same = same_file_error(*map(Path, args.convert))
            if same:
                ap.error(same)
            print(convert(Path(args.convert[0]), Path(args.convert[1]), args.variant, args.to or "hf"))
    except (CheckpointError, OSError) as exc:
        # the loader's own refusals (and a FileNotFoundError without an errno: a source gone since it was checked)
        # say what is wrong; an OSError of the system's is the destination of --convert (a missing folder, no
        # permission, a full disk; DST is left as it was): reading the source fails as a CheckpointError
        if isinstance(exc, CheckpointError) or (isinstance(exc, FileNotFoundError) and exc.errno is None):
            if report:   # what was checked before the failure
                print("\n".join(report))
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        if args.convert:
            print(f"FAILED: cannot write {args.convert[1]}: {_write_error(Path(args.convert[1]), exc)}", file=sys.stderr)
        else:
            print(f"FAILED: cannot read {args.verify}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)
    tool_exit(main())
