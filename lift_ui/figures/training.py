"""Loss curves from a run's metrics.jsonl rows: one run live, or several runs overlaid."""

import plotly.colors
import plotly.graph_objects as go

SERIES = (("loss", "train loss", "solid"), ("eval_loss", "eval loss", "dash"))


def ema(values: list[float], smoothing: float) -> list[float]:
    """Exponential moving average as in TensorBoard: smoothing 0 returns the values, 0.99 is very smooth."""
    smoothed, average = [], None
    for value in values:
        average = value if average is None else smoothing * average + (1 - smoothing) * value
        smoothed.append(average)
    return smoothed


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    # A row logs either train loss or eval loss; None means "not logged at this row". Zero is a real loss.
    points = [(row["step"], row[key]) for row in rows if row.get(key) is not None and row.get("step") is not None]
    return [step for step, _ in points], [float(value) for _, value in points]


def _log_floor(curves: list[list[float]]) -> float:
    """Where a zero loss sits on a log axis: a decade below the smallest positive loss, so it stays visible."""
    positive = [value for values in curves for value in values if value > 0]
    return min(positive) / 10 if positive else 1e-6


def _loss_traces(rows: list[dict], smoothing: float, color: str | None, prefix: str = "") -> list[go.Scatter]:
    traces = []
    for key, label, dash in SERIES:
        steps, losses = _series(rows, key)
        if not steps:
            continue
        name = f"{prefix}{label}"
        # Only the train loss is noisy (one batch per point); eval loss already averages the validation set.
        smooth = key == "loss" and smoothing > 0
        if smooth:
            traces.append(go.Scatter(x=steps, y=losses, mode="lines", name=f"{name} (raw)", opacity=0.25,
                                     line={"color": color, "dash": dash}, showlegend=False, customdata=losses,
                                     legendgroup=name))
        shown = ema(losses, smoothing) if smooth else losses
        traces.append(go.Scatter(x=steps, y=shown, mode="lines+markers" if len(steps) < 30 else "lines",
                                 name=name, line={"color": color, "dash": dash}, customdata=shown,
                                 legendgroup=name))
    return traces


def _finish(figure: go.Figure, title: str, log_y: bool) -> go.Figure:
    if log_y:
        curves = [list(trace.customdata) for trace in figure.data]
        floor = _log_floor(curves)
        for trace in figure.data:
            trace.y = [max(value, floor) for value in trace.customdata]
    for trace in figure.data:
        # Hover shows the true value, also where a zero was lifted to the log axis' floor.
        trace.hovertemplate = "step %{x}: %{customdata:.4g}<extra>%{fullData.name}</extra>"
    figure.update_layout(title=title, xaxis_title="step", yaxis_title="loss", hovermode="x unified",
                         margin={"t": 50, "r": 20, "b": 40, "l": 60}, legend={"orientation": "h", "y": -0.2})
    figure.update_yaxes(type="log" if log_y else "linear")
    return figure


def loss_curve(metrics_rows: list[dict], log_y: bool = False, smoothing: float = 0.0) -> go.Figure:
    """Train and eval loss against step for one run (rows of Run.metrics())."""
    figure = go.Figure(_loss_traces(metrics_rows, smoothing, color=None))
    if not figure.data:
        figure.add_annotation(text="No loss logged yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return _finish(figure, "Loss", log_y)


def overlay(runs: dict[str, list[dict]], log_y: bool = False, smoothing: float = 0.0) -> go.Figure:
    """The loss curves of several runs in one figure: one colour per run, eval loss dashed."""
    palette = plotly.colors.qualitative.Plotly
    figure = go.Figure()
    for index, (name, rows) in enumerate(runs.items()):
        figure.add_traces(_loss_traces(rows, smoothing, palette[index % len(palette)], prefix=f"{name}: "))
    if not figure.data:
        figure.add_annotation(text="Select runs with logged losses", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5)
    return _finish(figure, "Loss of the selected runs", log_y)
