"""Loss curves from a run's metrics.jsonl rows: one run live, or several runs overlaid.

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


def _run_traces(rows: list[dict], smoothing: float, run_color: str | None, prefix: str = "") -> list[go.Scatter]:
    """A run's loss curves (left axis) and validation scores (right axis); `run_color` None: a colour per series."""
    traces = []
    for key, label, dash in LOSS_SERIES:
        steps, losses = _series(rows, key)
        if not steps:
            continue
        name, color = f"{prefix}{label}", run_color or SERIES_COLORS[key]
        smooth = key in SMOOTHED_KEYS and smoothing > 0
        if smooth:
            traces.append(_line(key, steps, losses, f"{name} (raw)", color, dash, opacity=0.25, showlegend=False,
                                legendgroup=name))
        traces.append(_line(key, steps, ema(losses, smoothing) if smooth else losses, name, color, dash))
    for key, label in SCORE_SERIES:
        steps, scores = _series(rows, key)
        if steps:
            traces.append(_line(key, steps, scores, f"{prefix}{label}", run_color or SERIES_COLORS[key], SCORE_DASH,
                                yaxis="y2"))
    return traces


def _is_score(trace) -> bool:
    return trace.meta in SCORE_KEYS


def _score_axis(figure: go.Figure) -> dict | None:
    """The right-hand axis of the validation scores: 0..1 when they are all accuracies."""
    keys = {trace.meta for trace in figure.data if _is_score(trace)}
    if not keys:
        return None
    axis = {"overlaying": "y", "side": "right", "showgrid": False, "rangemode": "tozero"}
    if keys == {"val_accuracy"}:
        return {**axis, "title": "validation accuracy", "range": [0, 1.02]}
    return {**axis, "title": "validation RAE (lower is better)" if keys == {"val_rae"} else "validation score"}


def _finish(figure: go.Figure, title: str, log_y: bool) -> go.Figure:
    if log_y:
        losses = [trace for trace in figure.data if not _is_score(trace)]
        floor = _log_floor([list(trace.customdata) for trace in losses])
        for trace in losses:
            trace.y = [max(value, floor) for value in trace.customdata]
    for trace in figure.data:
        # Hover shows the true value, also where a zero was lifted to the log axis' floor.
        trace.hovertemplate = "step %{x}: %{customdata:.4g}<extra>%{fullData.name}</extra>"
    score_axis = _score_axis(figure)
    figure.update_layout(title=title, xaxis_title="step", yaxis_title="loss", hovermode="x unified",
                         margin={"t": 50, "r": 60 if score_axis else 20, "b": 40, "l": 60},
                         legend={"orientation": "h", "y": -0.2}, yaxis_type="log" if log_y else "linear")
    if score_axis:
        figure.update_layout(yaxis2=score_axis)  # its own scale: log-scaling is for the losses
    return figure


def loss_curve(metrics_rows: list[dict], log_y: bool = False, smoothing: float = 0.0) -> go.Figure:
    """Train and eval loss, decision loss and validation score against step for one run (rows of Run.metrics())."""
    figure = go.Figure(_run_traces(metrics_rows, smoothing, run_color=None))
    if not figure.data:
        figure.add_annotation(text="No loss logged yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return _finish(figure, "Loss", log_y)


def overlay(runs: dict[str, list[dict]], log_y: bool = False, smoothing: float = 0.0) -> go.Figure:
    """The curves of several runs in one figure: one colour per run, the series told apart by their dash."""
    figure = go.Figure()
    for index, (name, rows) in enumerate(runs.items()):
        figure.add_traces(_run_traces(rows, smoothing, PALETTE[index % len(PALETTE)], prefix=f"{name}: "))
    if not figure.data:
        figure.add_annotation(text="Select runs with logged losses", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5)
    return _finish(figure, "Loss of the selected runs", log_y)
