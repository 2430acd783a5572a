"""Loss curves from a run's metrics.jsonl rows: one run live, or one metric of several runs overlaid.

Beside the mean loss, the decision loss (the loss of the first answer token where the classes differ) and the
validation score (accuracy or RAE, on a second y axis) show whether the model learns the task itself.
"""

import plotly.colors
import plotly.graph_objects as go

PALETTE = plotly.colors.qualitative.Plotly
# (metrics key, legend label, line dash). The dash tells the series apart when colour tells the runs apart.
LOSS_SERIES = (
    ("loss", "train loss", "solid"),
    ("eval_loss", "eval loss", "dash"),
    ("decision_loss", "train decision loss", "dot"),
    ("eval_decision_loss", "eval decision loss", "dashdot"),
)
# Train losses are one batch per point, hence noisy; the eval ones already average the validation set.
SMOOTHED_KEYS = ("loss", "decision_loss")
# (metrics key, legend label): logged at each evaluation, drawn against the right-hand axis.
SCORE_SERIES = (("val_accuracy", "val accuracy"), ("val_rae", "val RAE"))
SCORE_KEYS = tuple(key for key, _ in SCORE_SERIES)
SCORE_DASH = "longdash"
# A run's own colours when it is alone in a figure: one per series.
SERIES_COLORS = dict(zip([key for key, _, _ in LOSS_SERIES] + list(SCORE_KEYS), PALETTE))
# What the overlay of several runs can show, one line per run: a loss, or the validation score, which is a
# classification's accuracy and a regression's RAE.
SCORE_CHOICE = "validation score"
OVERLAY_METRICS = {**{label: (key,) for key, label, _ in LOSS_SERIES}, SCORE_CHOICE: SCORE_KEYS}
DEFAULT_OVERLAY_METRIC = "train loss"


def ema(values: list[float], smoothing: float) -> list[float]:
    """Exponential moving average as in TensorBoard: smoothing 0 returns the values, 0.99 is very smooth."""
    smoothed, average = [], None
    for value in values:
        average = value if average is None else smoothing * average + (1 - smoothing) * value
        smoothed.append(average)
    return smoothed


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    # A row logs either train or eval values; None means "not logged at this row". Zero is a real loss.
    points = [(row["step"], row[key]) for row in rows if row.get(key) is not None and row.get("step") is not None]
    return [step for step, _ in points], [float(value) for _, value in points]


def _log_floor(curves: list[list[float]]) -> float:
    """Where a zero loss sits on a log axis: a decade below the smallest positive loss, so it stays visible."""
    positive = [value for values in curves for value in values if value > 0]
    return min(positive) / 10 if positive else 1e-6


def _line(key: str, steps: list[int], values: list[float], name: str, color: str, dash: str, **style) -> go.Scatter:
    # `meta` keeps the metrics key: it tells _finish which traces are scores.
    return go.Scatter(x=steps, y=values, mode="lines+markers" if len(steps) < 30 else "lines", name=name,
                      line={"color": color, "dash": dash}, customdata=values, meta=key,
                      **{"legendgroup": name, **style})


def _curve(rows: list[dict], key: str, name: str, color: str, dash: str, smoothing: float = 0.0,
           **style) -> list[go.Scatter]:
    """One series of a run: none when it was never logged; a smoothed train loss comes over its faint raw curve."""
    steps, values = _series(rows, key)
    if not steps:
        return []
    if key not in SMOOTHED_KEYS or smoothing <= 0:
        return [_line(key, steps, values, name, color, dash, **style)]
    return [_line(key, steps, values, f"{name} (raw)", color, dash, opacity=0.25, showlegend=False,
                  legendgroup=name),
            _line(key, steps, ema(values, smoothing), name, color, dash, **style)]


def _run_traces(rows: list[dict], smoothing: float) -> list[go.Scatter]:
    """A run's loss curves (left axis) and validation scores (right axis), a colour per series."""
    traces = []
    for key, label, dash in LOSS_SERIES:
        traces += _curve(rows, key, label, SERIES_COLORS[key], dash, smoothing)
    for key, label in SCORE_SERIES:
        traces += _curve(rows, key, label, SERIES_COLORS[key], SCORE_DASH, yaxis="y2")
    return traces


def _is_score(trace) -> bool:
    return trace.meta in SCORE_KEYS


def _score_axis(keys: set[str]) -> dict:
    """The axis of validation scores: 0..1 when they are all accuracies."""
    if keys == {"val_accuracy"}:
        return {"title": "validation accuracy", "range": [0, 1.02]}
    title = "validation RAE (lower is better)" if keys == {"val_rae"} else "validation score"
    return {"title": title, "rangemode": "tozero"}


def _empty(figure: go.Figure, text: str) -> go.Figure:
    """Blank axes from 0 with `text` in the middle: plotly draws an empty figure's axes from -1."""
    figure.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_xaxes(range=[0, 1], showticklabels=False)
    figure.update_yaxes(range=[0, 1], showticklabels=False)
    return figure


def _finish(figure: go.Figure, title: str, log_y: bool, y_title: str = "loss",
            score_axis: dict | None = None) -> go.Figure:
    if log_y:
        losses = [trace for trace in figure.data if not _is_score(trace)]
        floor = _log_floor([list(trace.customdata) for trace in losses])
        for trace in losses:
            trace.y = [max(value, floor) for value in trace.customdata]
    for trace in figure.data:
        # Hover shows the true value, also where a zero was lifted to the log axis' floor.
        trace.hovertemplate = "step %{x}: %{customdata:.4g}<extra>%{fullData.name}</extra>"
    figure.update_layout(title=title, xaxis_title="step", yaxis_title=y_title, hovermode="x unified",
                         margin={"t": 50, "r": 60 if score_axis else 20, "b": 40, "l": 60},
                         legend={"orientation": "h", "y": -0.2})
    # Losses are never negative: a linear axis starts at 0 rather than below it.
    figure.update_yaxes(type="log" if log_y else "linear", rangemode="normal" if log_y else "tozero")
    if score_axis:  # its own scale: log-scaling is for the losses
        figure.update_layout(yaxis2={**score_axis, "overlaying": "y", "side": "right", "showgrid": False})
    return figure


def loss_curve(metrics_rows: list[dict], log_y: bool = False, smoothing: float = 0.0) -> go.Figure:
    """Train and eval loss, decision loss and validation score against step for one run (rows of Run.metrics())."""
    figure = go.Figure(_run_traces(metrics_rows, smoothing))
    if not figure.data:
        _empty(figure, "No loss logged yet")
    scores = {trace.meta for trace in figure.data if _is_score(trace)}
    return _finish(figure, "Loss", log_y, score_axis=_score_axis(scores) if scores else None)


def overlay(runs: dict[str, list[dict]], metric: str = DEFAULT_OVERLAY_METRIC, log_y: bool = False) -> go.Figure:
    """One metric (an OVERLAY_METRICS choice) of several runs: one line and colour per run.

    A validation score line is named with what it scores, as a classification's accuracy and a regression's RAE
    may share the figure."""
    keys, labels = OVERLAY_METRICS[metric], dict(SCORE_SERIES)
    figure = go.Figure()
    for index, (name, rows) in enumerate(runs.items()):
        color = PALETTE[index % len(PALETTE)]
        lines = (_curve(rows, key, f"{name} ({labels[key]})" if key in labels else name, color, "solid")
                 for key in keys)
        figure.add_traces(next((line for line in lines if line), []))
    if not figure.data:
        _empty(figure, f"Select runs that logged a {metric}")
    title = f"{metric.capitalize()} of the selected runs"
    if metric != SCORE_CHOICE:
        return _finish(figure, title, log_y, metric)
    return _finish(figure, title, False).update_yaxes(**_score_axis({trace.meta for trace in figure.data}))
