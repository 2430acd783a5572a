"""Score a run on its test split: eval.json and predictions.csv."""

import time

import numpy as np
import pandas as pd

from lift_core import baselines, data, metrics
from lift_core.predict import Predictor, Progress, cached_predictor
from lift_core.runs import Run


def evaluate_run(run: Run, *, predictor: Predictor | None = None, model=None, tokenizer=None,
                 progress: Progress | None = None) -> dict:
    """Predict the test split, write predictions.csv and eval.json, and return the metrics.

    A `model` handed over (the one training just finished with) is put in eval mode here: its owner is done
    training it, and a Predictor never switches a model's mode itself.
    """
    started = time.perf_counter()
    info = run.dataset_info()
    if predictor is None:
        predictor = Predictor.for_run(run, model.eval(), tokenizer) if model is not None else Predictor.from_run(run)
    frame = run.split("test")
    y_true = frame[info.target].tolist()
    config = run.config()
    samples = 0 if info.task == "classification" else config.eval_samples
    predicted = predictor.predict(frame, samples=samples, temperature=config.eval_temperature, progress=progress)
    if info.task == "classification":
        probabilities = predicted[[f"p_{label}" for label in info.classes]].to_numpy()
        results = metrics.classification_metrics(y_true, predicted["y_pred"].tolist(), probabilities,
                                                 info.classes)
        # Label scoring always yields a valid class; a greedy generation shows whether the model
        # also writes answers in the right form, which is what the paper's invalid rate measures.
        generated = predictor.predict(frame, samples=1, temperature=0.0)
        greedy = metrics.classification_metrics(y_true, generated["y_pred"].tolist(), None, info.classes)
        results["invalid_rate"] = greedy["invalid_rate"]
        results["generated_accuracy"] = greedy["accuracy"]
        results["mode"] = "label scoring"
        most_common = run.split("train")[info.target].mode().iloc[0]
        results["majority_accuracy"] = float(np.mean(np.asarray(y_true) == most_common)) if y_true else None
    else:
        results = metrics.regression_metrics(y_true, predicted["y_pred"].tolist(),
                                             n_invalid=int(np.round(predicted["invalid"].sum())))
        results["invalid_rate"] = float(predicted["invalid"].mean()) if len(predicted) else 0.0
        results["mode"] = "sampling"
    results["task"] = info.task
    results["eval_seconds"] = round(time.perf_counter() - started, 2)
    output = frame.rename(columns={info.target: "y_true"})
    run.save_evaluation(results, pd.concat([output.reset_index(drop=True), predicted], axis=1))
    return results


def ensure_evaluated(run: Run, *, progress: Progress | None = None) -> dict:
    """The run's eval.json; a run stopped before its evaluation is evaluated now, once."""
    results = run.eval_results()
    if results is None:
        if progress:
            progress(0, len(run.split("test")))  # loading the model takes a while before the first row
        results = evaluate_run(run, predictor=cached_predictor(run), progress=progress)
    return results


# How far above always answering the most common class a model must score to count as having learned.
MAJORITY_MARGIN = 0.02


def majority_warning(results: dict) -> str | None:
    """A plain warning when a classifier is no better than always answering the training set's commonest class."""
    majority, accuracy = results.get("majority_accuracy"), results.get("accuracy")
    # A perfect score beats the commonest class even where that class is (almost) every test row.
    if majority is None or accuracy is None or accuracy >= 1.0 or accuracy > majority + MAJORITY_MARGIN:
        return None
    return (f"The model is no better than always answering the most common class (accuracy {accuracy:.3f} "
            f"against {majority:.3f}): it has not learned this task yet. Try training longer (more epochs or "
            "max steps), a higher learning rate, or the default settings (the Recommended preset); check that "
            "the features can predict the target (compare the baselines).")


def run_dataset(run: Run) -> tuple[data.Dataset, data.Splits]:
    """The run's data and splits, read back from its folder, for baselines and plots."""
    info = run.dataset_info()
    splits = data.Splits(*(run.split(name) for name in ("train", "val", "test")))
    dataset = data.Dataset(frame=pd.concat([splits.train, splits.val, splits.test], ignore_index=True),
                           target=info.target, features=info.features, task=info.task,
                           classes=info.classes, n_dropped=info.n_dropped)
    return dataset, splits


def run_baselines(run: Run, *, names=None) -> pd.DataFrame:
    """The baselines on exactly the run's split, saved beside its own results."""
    dataset, splits = run_dataset(run)
    table = baselines.run_baselines(splits, dataset, names=names, seed=run.config().seed)
    run.save_baselines(table)
    return table


def cached_baselines(run: Run) -> pd.DataFrame:
    """The run's saved baseline scores, fitting them first if they were never saved."""
    saved = run.baselines()
    return saved if saved is not None else run_baselines(run)
