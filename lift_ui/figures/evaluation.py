"""Figures of a run's test results: confusion matrix, parity plot, and the model beside the baselines."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

INVALID_LABEL = "(invalid)"
MODEL_BAR = "LIFT (this run)"
MODEL_COLOR = "#d62728"
BASELINE_COLOR = "#7f7f7f"


def confusion_figure(y_true, y_pred, classes: list[str]) -> go.Figure:
    """Counts of true (rows) against predicted (columns) classes; every test row lands in one cell.

    Answers that are no class get their own column, so the counts always add up to the test rows.
    """
    y_true = pd.Series(y_true, dtype=object).astype(str)
    y_pred = pd.Series(y_pred, dtype=object).where(lambda values: values.isin(classes), INVALID_LABEL)
    predicted_labels = classes + ([INVALID_LABEL] if (y_pred == INVALID_LABEL).any() else [])
    counts = pd.crosstab(y_true, y_pred).reindex(index=classes, columns=predicted_labels, fill_value=0)
    figure = go.Figure(go.Heatmap(
        z=counts.to_numpy(), x=predicted_labels, y=classes, colorscale="Blues", texttemplate="%{z}",
        hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>", colorbar={"title": "rows"},
    ))
    figure.update_layout(title="Confusion matrix (test split)", xaxis_title="predicted", yaxis_title="true")
    # Categorical axes in class order, first class at the top as in the usual confusion-matrix layout.
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category", autorange="reversed")
    return figure


def parity_figure(y_true, y_pred, std=None) -> go.Figure:
    """Predicted against true values; points on the diagonal are exact, error bars are the sample std."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    error = None if std is None else {"type": "data", "array": np.asarray(std, dtype=float), "thickness": 1}
    figure = go.Figure(go.Scatter(
        x=y_true, y=y_pred, error_y=error, mode="markers", name="test rows",
        hovertemplate="true %{x:.3g}, predicted %{y:.3g}<extra></extra>",
    ))
    values = np.concatenate([y_true, y_pred])
    values = values[np.isfinite(values)]
    if values.size:
        low, high = values.min(), values.max()
        figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="exact",
                                    line={"dash": "dash", "color": "gray"}))
    figure.update_layout(title="Parity plot (test split)", xaxis_title="true", yaxis_title="predicted")
    return figure


def baseline_scores_figure(baselines: pd.DataFrame, metric: str, model_score: float | None) -> go.Figure:
    """One bar per baseline and one for the finetuned model, best first."""
    scores = dict(zip(baselines["name"], baselines[metric]))
    if model_score is not None:
        scores[MODEL_BAR] = model_score
    lower_is_better = metric in ("rmse", "mae", "rae", "log_loss")
    names = sorted(scores, key=lambda name: scores[name], reverse=not lower_is_better)
    figure = go.Figure(go.Bar(
        x=names, y=[scores[name] for name in names], texttemplate="%{y:.3g}",
        marker_color=[MODEL_COLOR if name == MODEL_BAR else BASELINE_COLOR for name in names],
    ))
    direction = "lower" if lower_is_better else "higher"
    figure.update_layout(title=f"Test {metric} ({direction} is better)", yaxis_title=metric, showlegend=False)
    return figure
