"""The current table and the Data tab's choice of target, features and task on it, read once for every tab that
uses them (the Data and Prompt tabs)."""

from functools import lru_cache

import pandas as pd

from lift_core import data
from lift_core.errors import LiftError


@lru_cache(maxsize=4)
def read_table(path: str) -> pd.DataFrame:
    """The table at `path`, read once: every file in the uploads folder is written once and never changed.

    Callers share the cached frame, so they must not modify it.
    """
    return data.load_table(path)


def selected_dataset(data_path: str | None, target: str | None, features: list[str] | None,
                     task: str) -> data.Dataset:
    """The current table with the Data tab's choices applied.

    Cached like read_table (many pages ask again and again for the same choice), so callers must not modify it.
    """
    if not data_path:
        raise LiftError("Load a table in the Data tab first: upload a file or generate a synthetic set.")
    if not target:
        raise LiftError("Choose the target column, the one the model should predict.")
    return _prepared_dataset(data_path, target, tuple(features or ()), task)


@lru_cache(maxsize=16)
def _prepared_dataset(data_path: str, target: str, features: tuple[str, ...], task: str) -> data.Dataset:
    return data.prepare_dataset(read_table(data_path), target, features=list(features),
                                task=None if task == "auto" else task)
