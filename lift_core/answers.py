"""A model's answers as prediction frames: label scores as class probabilities, sampled answers as votes or as
regression draws. One row per input row."""

from collections import Counter

import numpy as np
import pandas as pd

from lift_core import prompts


def normalized_entropy(shares: np.ndarray) -> np.ndarray:
    """Entropy of each row in [0, 1]: 0 when one class takes everything, 1 when all are equal."""
    n_classes = shares.shape[1]
    if n_classes < 2:
        return np.zeros(len(shares))
    safe = np.where(shares > 0, shares, 1.0)
    # + 0.0 turns the -0.0 of a certain row into a plain 0.
    return -(shares * np.log(safe)).sum(axis=1) / np.log(n_classes) + 0.0


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Each row's log-likelihoods (up to a constant per row) as probabilities that sum to one."""
    scores = scores - scores.max(axis=1, keepdims=True)
    proba = np.exp(scores)
    return proba / proba.sum(axis=1, keepdims=True)


def shares_frame(classes: list[str], shares: np.ndarray, invalid: np.ndarray) -> pd.DataFrame:
    """y_pred (the class with the largest share, the first in `classes` on a tie; None for a row without any),
    p_<class> for every class, spread (the shares' normalized entropy; the largest for a row without any share,
    as uncertain as can be) and invalid."""
    has_share = shares.sum(axis=1) > 0
    winners = np.asarray(classes, dtype=object)[shares.argmax(axis=1)]
    result = pd.DataFrame({"y_pred": list(np.where(has_share, winners, None))})
    for index, label in enumerate(classes):
        result[f"p_{label}"] = shares[:, index]
    spread_shares = np.where(has_share[:, None], shares, 1.0)
    result["spread"] = normalized_entropy(spread_shares / spread_shares.sum(axis=1, keepdims=True))
    result["invalid"] = invalid
    return result


def scored_frame(classes: list[str], proba: np.ndarray) -> pd.DataFrame:
    """Label scoring's predictions: the likeliest class, never an invalid answer."""
    return shares_frame(classes, proba, np.zeros(len(proba)))


def vote_frame(classes: list[str], answers: list[list[str]]) -> pd.DataFrame:
    """Each row's sampled answers as votes: the class shares among all answers, the share of unparsable answers,
    the winner. The spread is the entropy of the valid votes only."""
    index = {label: i for i, label in enumerate(classes)}
    shares = np.zeros((len(answers), len(classes)))
    invalid = np.zeros(len(answers))
    for row, texts in enumerate(answers):
        votes = Counter(prompts.parse_class(text, classes) for text in texts)
        invalid[row] = votes.pop(None, 0) / len(texts)
        for label, count in votes.items():
            shares[row, index[label]] = count / len(texts)
    return shares_frame(classes, shares, invalid)


def regression_frame(answers: list[list[str]], fallback_value: float | None) -> pd.DataFrame:
    """Each row's sampled numbers: y_pred (their mean), median, std, invalid (the share that did not parse)."""
    rows = []
    for texts in answers:
        values = [v for v in (prompts.parse_number(text) for text in texts) if v is not None]
        invalid = 1 - len(values) / len(texts)
        if not values:
            # As in the paper: a row with no usable sample gets the training mean.
            values = [fallback_value if fallback_value is not None else 0.0]
        rows.append({"y_pred": float(np.mean(values)), "median": float(np.median(values)),
                     "std": float(np.std(values)), "invalid": invalid})
    return pd.DataFrame(rows, columns=["y_pred", "median", "std", "invalid"])
