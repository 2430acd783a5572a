"""Start's checks of the data and the template, run as each choice is made (in the web app: as the target, the
features, the task or the template is picked), so that a choice that passes here is not refused at Start."""

from dataclasses import dataclass

import pandas as pd

from lift_core import data
from lift_core.config import TrainConfig
from lift_core.encoding import check_example_lengths
from lift_core.errors import LiftError


@dataclass
class TableChoice:
    """A choice of target, features and task on a table, checked; refused when `problem` says why."""
    task: str | None          # the task chosen or detected; None while the target has no values to tell from
    n_classes: int | None     # the target's distinct labels, for a classification
    n_features: int           # the features that would be given to the model
    dataset: data.Dataset | None = None  # the prepared dataset; None when the choice is refused
    problem: str | None = None


def check_table_choice(table: pd.DataFrame, target: str, features: list[str] | None = None,
                       task: str | None = None) -> TableChoice:
    """The choice as training would take it, or, when training would refuse it, what it would be and why not:
    a refused choice still has a task and a class count to show next to the reason."""
    try:
        dataset = data.prepare_dataset(table, target, features=features, task=task)
    except LiftError as error:
        return _refused_choice(table, target, features, task, str(error))
    return TableChoice(dataset.task, len(dataset.classes) if dataset.classes else None, len(dataset.features),
                       dataset)


def _refused_choice(table: pd.DataFrame, target, features, task, problem: str) -> TableChoice:
    n_features = len(features) if features is not None else max(0, len(table.columns) - (target in table.columns))
    values = table[target].dropna() if target in table.columns else pd.Series(dtype=object)
    if values.empty:
        return TableChoice(task, None, n_features, problem=problem)
    task = task or data.infer_task(values)
    n_classes = values.map(data.label_text).nunique() if task == "classification" else None
    return TableChoice(task, n_classes, n_features, problem=problem)


def check_prompt_lengths(config: TrainConfig, dataset: data.Dataset) -> None:
    """Start's refusal of examples longer than the model takes (`config` gives the model, the template and the
    limit), on every row of the table: each row ends up in one of the splits."""
    nothing = dataset.frame.iloc[:0]
    check_example_lengths(config, dataset, data.Splits(train=dataset.frame, val=nothing, test=nothing))
