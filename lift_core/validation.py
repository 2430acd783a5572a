"""Validation during training: the Validator scores the model on the validation rows at each evaluation, keeps
the best weights so far, says when there is nothing left to learn, and carries all that through a checkpoint."""

from pathlib import Path

import torch

from lift_core import data, metrics

BEST_WEIGHTS_FILE = "best_weights.safetensors"  # the validator's best weights so far, in a checkpoint


class Validator:
    """Scores the model on the validation rows at each evaluation and keeps the best adapter weights.

    The score is accuracy by label scoring for classification, and the RAE of one greedy answer per row for
    regression: what the user is after, where the validation loss also counts the format tokens. As in the
    LIFT paper, the best evaluation is kept, not only the last.
    """

    def __init__(self, predictor, frame, target: str, patience: int = 0, perfect_patience: int = 0):
        self.predictor = predictor
        self.frame = frame
        self.truth = frame[target].to_numpy()
        self.patience = patience
        self.perfect_patience = perfect_patience if predictor.task == "classification" else 0
        self.best_score = None
        self.best_step = None
        self.best_weights = None
        self.stale = 0
        self.perfect = 0  # evaluations in a row at a perfect accuracy

    @property
    def key(self) -> str:
        return "val_accuracy" if self.predictor.task == "classification" else "val_rae"

    def score(self, model) -> float:
        """Scored as the test evaluation scores (lift_core/metrics.py), so that the two read alike."""
        model.eval()
        if self.predictor.task == "classification":
            predicted = self.predictor.predict(self.frame)  # label scoring
            labels = [data.label_text(value) for value in self.truth]
            return metrics.classification_metrics(labels, predicted["y_pred"].tolist(), None,
                                                  self.predictor.classes)["accuracy"]
        predicted = self.predictor.predict(self.frame, samples=1, temperature=0.0)
        # A constant target has no RAE (None): every score then ties at 0.
        return metrics.regression_metrics(self.truth.astype(float), predicted["y_pred"])["rae"] or 0.0

    def __call__(self, model, step: int, score: float | None = None) -> dict:
        score = self.score(model) if score is None else score
        sign = 1 if self.predictor.task == "classification" else -1  # accuracy up, RAE down
        improved = self.best_score is None or sign * score > sign * self.best_score
        # A tie keeps the later weights, trained longer for the same score, but does not count as progress.
        if improved or score == self.best_score:
            self.best_score, self.best_step = score, step
            self.best_weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        self.stale = 0 if improved else self.stale + 1
        self.perfect = self.perfect + 1 if score == 1.0 and self.predictor.task == "classification" else 0
        return {self.key: score}

    @property
    def exhausted(self) -> bool:
        return self.stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        """Why there is nothing left to learn, in words: flat for `patience` evaluations, or perfect for
        `perfect_patience` in a row; None while there is."""
        if self.perfect_patience > 0 and self.perfect >= self.perfect_patience:
            return f"the validation accuracy was perfect at {self.perfect} evaluations in a row"
        if self.patience > 0 and self.stale >= self.patience:
            return f"the validation score did not improve in {self.stale} evaluations"
        return None

    def state(self) -> dict:
        return {"best_score": self.best_score, "best_step": self.best_step, "stale": self.stale,
                "perfect": self.perfect}

    def save(self, folder: Path) -> None:
        """The best weights so far into a checkpoint folder (the scores go into its state file)."""
        if self.best_weights is not None:
            from safetensors.torch import save_file

            save_file({name: weights.contiguous() for name, weights in self.best_weights.items()},
                      folder / BEST_WEIGHTS_FILE)

    def load(self, folder: Path, state: dict) -> None:
        """Continue from a checkpoint: its best score, step, patience count and best weights."""
        self.best_score, self.best_step, self.stale = state["best_score"], state["best_step"], state["stale"]
        self.perfect = state.get("perfect", 0)
        if (folder / BEST_WEIGHTS_FILE).exists():
            from safetensors.torch import load_file

            self.best_weights = load_file(folder / BEST_WEIGHTS_FILE)

    def restore_best(self, model) -> None:
        if self.best_weights is None:
            return
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, weights in self.best_weights.items():
                parameters[name].copy_(weights)
