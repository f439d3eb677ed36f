"""Command-line tools: demo, benchmarks, GPU check, weights helper."""

from pathlib import Path


def output_folder_error(out: Path, e: OSError) -> str:
    """Why ``--out`` ``out`` could not be made or used, said so that a user knows what to change: a path that
    names a file (or lies under one) is said to be a file, where ``mkdir`` says only 'File exists' / 'Not a
    directory'."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            if p == out:
                return (f"{out} is a file, not a folder; give --out a folder (a new name, or an existing folder), "
                        "or move the file away")
            return f"{p} is a file, so no folder can be made under it; give --out a path that is not under a file"
    return str(e.strerror or e)
