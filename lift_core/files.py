"""Files written whole or not at all: a reader polling one (a page, another process) never sees half of it."""

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object], replace_folder: bool = False) -> None:
    """write(a temporary path beside `path`), then rename it to `path` in one step.

    Works for a file or a folder. A folder already at `path` stays unless `replace_folder`: then it is set
    aside just before the rename and removed after it. Otherwise, if the rename fails (a folder another process
    completed first), the temporary copy is removed and the error raised.
    """
    path = Path(path)
    writer = f"{os.getpid()}-{threading.get_ident()}"  # two threads of a server may write the same file at once
    partial = path.with_name(f".{path.name}.{writer}.tmp")
    write(partial)
    previous = path.with_name(f".{path.name}.{writer}.old")
    if replace_folder and path.is_dir():
        os.replace(path, previous)
    try:
        os.replace(partial, path)
    except OSError:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def write_json_atomically(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=2, default=json_default)
    write_atomically(path, lambda partial: partial.write_text(text))


def json_default(value):
    """numpy scalars as plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def read_json(path: Path) -> dict | None:
    """The file's JSON, or None where it is missing or (being written by a non-atomic writer) unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
