"""Command-line tools: demo, benchmarks, GPU check, weights helper."""

import os
from pathlib import Path


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
