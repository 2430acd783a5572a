"""A study's figures: LIFT's test score against the factor beside the baselines' (lift_core.study_results.summary),
and small multiples of the decision boundaries, one per level (lift_core.study_results.level_maps)."""

import math

import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lift_core.studies import LIFT
from lift_ui.figures.explore import EXTRAPOLATION_FILL, prediction_figure

LIFT_COLOR = "rgb(31, 119, 180)"
LIFT_BAND = "rgba(31, 119, 180, 0.2)"
# The baselines' colours: the qualitative palette without its first colour, which is LIFT's.
BASELINE_COLORS = plotly.colors.qualitative.Plotly[1:]
HOVER = "%{x}: %{y:.4g} ± %{customdata[0]:.2g} over %{customdata[1]} run(s)<extra>%{fullData.name}</extra>"
MAP_COLUMNS = 3  # small multiples per row
MAP_ROW_HEIGHT = 330  # pixels


def study_curve(summary: pd.DataFrame, factor: str, metric_title: str, numeric_levels: bool) -> go.Figure:
    """LIFT's mean test score per level as a bold line with a band of ± one std across seeds, each baseline as a
    thinner line (a click on the legend hides one). `summary`: study_results.summary's columns; its levels are
    text, read as numbers on a numeric axis and kept in the study's order on a categorical one."""
    frame = summary.assign(level=pd.to_numeric(summary["level"])) if numeric_levels else summary
    figure = go.Figure()
    lift = frame[frame["method"] == LIFT]
    if len(lift):
        figure.add_traces([
            go.Scatter(x=lift["level"], y=lift["mean"] - lift["std"], mode="lines", line={"width": 0},
                       legendgroup=LIFT, showlegend=False, hoverinfo="skip"),
            go.Scatter(x=lift["level"], y=lift["mean"] + lift["std"], mode="lines", line={"width": 0},
                       fill="tonexty", fillcolor=LIFT_BAND, legendgroup=LIFT, name=f"{LIFT} ± std across seeds",
                       hoverinfo="skip"),
        ])
    methods = [LIFT] + [method for method in dict.fromkeys(frame["method"]) if method != LIFT]
    for index, method in enumerate(methods):
        rows = frame[frame["method"] == method]
        if len(rows) == 0:
            continue
        bold = method == LIFT
        color = LIFT_COLOR if bold else BASELINE_COLORS[(index - 1) % len(BASELINE_COLORS)]
        figure.add_trace(go.Scatter(
            x=rows["level"], y=rows["mean"], mode="lines+markers", name=method, legendgroup=method,
            line={"color": color, "width": 4 if bold else 1.5}, marker={"size": 10 if bold else 6},
            customdata=rows[["std", "runs"]].to_numpy(), hovertemplate=HOVER))
    figure.update_layout(title=f"Test score against the {factor}", xaxis_title=factor, yaxis_title=metric_title,
                         legend={"orientation": "h", "y": -0.2}, hovermode="closest")
    if not numeric_levels:
        figure.update_xaxes(type="category", categoryorder="array",
                            categoryarray=list(dict.fromkeys(frame["level"])))
    return figure


def level_maps_figure(maps: list[tuple[str, pd.DataFrame, pd.DataFrame]], features: list[str], target: str,
                      classes: list[str] | None, factor: str) -> go.Figure:
    """One map per level, titled by it: `maps` holds (title, grid, the run's training rows). A 2-D classifier's
    classes as Explore draws them, a 2-D regression's predictions on one colour scale for every level, a 1-D
    regression's line with its band and its training range's rows; one legend and colour bar for all."""
    rows = max(1, math.ceil(len(maps) / MAP_COLUMNS))
    columns = min(MAP_COLUMNS, max(1, len(maps)))
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[title for title, _, _ in maps],
                           shared_xaxes="all", shared_yaxes="all", horizontal_spacing=0.06, vertical_spacing=0.12)
    value_range = _shared_range([grid for _, grid, _ in maps]) if len(features) == 2 and not classes else None
    for position, (_, grid, train) in enumerate(maps):
        row, column = divmod(position, MAP_COLUMNS)
        panel = prediction_figure(grid, features, train, target, classes, "", value_range)
        for trace in panel.data:
            if isinstance(trace, go.Heatmap):  # shown by its colour bar, not in the legend
                trace.update(showscale=position == 0)
            else:
                trace.update(legendgroup=trace.name, showlegend=position == 0 and trace.showlegend is not False)
            figure.add_trace(trace, row=row + 1, col=column + 1)
        for shape in panel.layout.shapes:  # a 1-D regression's range beyond its training rows
            figure.add_vrect(x0=shape.x0, x1=shape.x1, fillcolor=EXTRAPOLATION_FILL, line_width=0, layer="below",
                             row=row + 1, col=column + 1)
    figure.update_xaxes(title_text=features[0], row=rows)
    figure.update_yaxes(title_text=features[1] if len(features) == 2 else target, col=1)
    figure.update_layout(title=f"Decision boundaries per level: {factor}", height=MAP_ROW_HEIGHT * rows + 120,
                         legend={"orientation": "h", "y": -0.1, "yanchor": "top"}, margin={"b": 100})
    return figure


def _shared_range(grids: list[pd.DataFrame]) -> tuple[float, float]:
    """The predictions' range over every level: one colour bar reads them all."""
    return (min(float(grid["y_pred"].min()) for grid in grids), max(float(grid["y_pred"].max()) for grid in grids))
