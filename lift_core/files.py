"""Files written whole or not at all: a reader polling one (a page, another process) never sees half of it."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """write(a temporary path beside `path`), then rename it to `path` in one step.

    Works for a file or a folder. If the rename fails (a folder another process completed first), the
    temporary copy is removed and the error raised.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(partial)
    try:
        os.replace(partial, path)
    except OSError:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
