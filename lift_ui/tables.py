"""The current table and the Data tab's choice of target, features and task on it, read once for every part of the
page that uses them (the Data and Prompt tabs, the active-table lines), and how a table is shown."""

from functools import lru_cache
from pathlib import Path

import pandas as pd

from lift_core import data
from lift_core.config import DEFAULTS, TrainConfig
from lift_core.errors import LiftError
from lift_core.selection import TableChoice, check_table_choice

NO_TABLE_LINE = "No table loaded yet: upload one or generate a synthetic set in the Data tab."
# What a button that needs the table says without one; the same words wherever it is pressed.
NO_TABLE = "Load a table in the Data tab first: upload a file or generate a synthetic set."
NO_TARGET = "Choose the target column in the Data tab, the one the model should predict."


@lru_cache(maxsize=4)
def read_table(path: str) -> pd.DataFrame:
    """The table at `path`, read once: every file in the uploads folder is written once and never changed.

    Callers share the cached frame, so they must not modify it.
    """
    return data.load_table(path)


def table_name(data_path: str) -> str:
    """The name the table goes by: an upload's own file name (its copy keeps it), or a synthetic set's."""
    return Path(data_path).name


def selected_dataset(data_path: str | None, target: str | None, features: list[str] | None,
                     task: str) -> data.Dataset:
    """The current table with the Data tab's choices applied; a LiftError says why it cannot be used."""
    choice = table_choice(data_path, target, features, task)
    if choice.problem:
        raise LiftError(choice.problem)
    return choice.dataset


def table_choice(data_path: str | None, target: str | None, features: list[str] | None, task: str) -> TableChoice:
    """The Data tab's choice checked as training would check it; a LiftError when there is no choice to check.

    Cached like read_table (many parts of the page ask again and again for the same choice), so callers must not
    modify it.
    """
    if not data_path:
        raise LiftError(NO_TABLE)
    if not target:
        raise LiftError(NO_TARGET)
    return _checked_choice(data_path, target, tuple(features or ()), task)


@lru_cache(maxsize=16)
def _checked_choice(data_path: str, target: str, features: tuple[str, ...], task: str) -> TableChoice:
    return check_table_choice(read_table(data_path), target, list(features), None if task == "auto" else task)


def active_table_line(data_path, target, features, task) -> str:
    """One line naming the table in use and the choice on it, with a short warning when training would refuse
    the choice (the Data tab gives the reason, once)."""
    if not data_path:
        return NO_TABLE_LINE
    parts = [f"Active table: **{table_name(data_path)}**"]
    try:
        choice = table_choice(data_path, target, features, task)
    except LiftError:
        trouble = "the table cannot be read: the Data tab says why" if target else "choose the target in the Data tab"
        return " · ".join(parts + [f"⚠️ {trouble}"])
    parts.append(f"target `{target}`")
    if choice.task == "classification" and choice.n_classes:
        parts.append(f"classification, {choice.n_classes} classes")
    elif choice.task:
        parts.append(choice.task)
    parts.append(f"{choice.n_features} feature{'' if choice.n_features == 1 else 's'}")
    if choice.problem:
        parts.append("⚠️ cannot be trained on as chosen: the Data tab says why")
    return " · ".join(parts)


def make_config(data, target, features, task, template, template_text, decimals, model, table_required=True,
                **settings) -> TrainConfig:
    """The TrainConfig the page describes: the shared Data/Prompt components plus this tab's settings.

    `settings` are keyed by TrainConfig field; each value is cast to the type of that field's default. Settings
    that need no translation come this way whichever tab shows them (the Prompt tab's trim_zeros). Without
    `table_required`, a config without a table or target is one too.
    """
    if table_required and not data:
        raise LiftError(NO_TABLE)
    if table_required and not target:
        raise LiftError(NO_TARGET)
    if not (model or "").strip():
        raise LiftError("Choose a model: one from the list, a hub id or a local folder.")
    empty = [name for name, value in settings.items() if value is None or value == ""]
    if empty:
        raise LiftError(f"Give a value for: {', '.join(empty)}.")
    return TrainConfig(
        data=data or "", target=target or "", features=list(features or []) or None,
        task=None if task in (None, "auto") else task,
        template=template or DEFAULTS.template,
        template_text=template_text if template == "custom" else None,
        decimals=int(decimals if decimals is not None else DEFAULTS.decimals),
        model=model.strip(),
        **{name: type(getattr(DEFAULTS, name))(value) for name, value in settings.items()},
    )
