"""Figures over a grid of feature values: decision boundaries, variance maps and 1-D regression bands.

Every builder takes a grid frame from lift_core.boundary (feature columns plus the predictions) and the
run's training rows, which are drawn on top so the map can be read against the data. A model's grid says which
points the model answered (its `scored` column, absent from a baseline's): the hover says it of every point.
"""

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

CLASS_COLORS = plotly.colors.qualitative.D3
# Lightest shade of a class's colour, used where the model is no surer of it than of a uniform guess.
UNSURE_SHADE = 0.12
EXTRAPOLATION_FILL = "rgba(128, 128, 128, 0.15)"


def class_color(index: int) -> str:
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def _blend_with_white(color: str, share: float) -> str:
    red, green, blue = plotly.colors.hex_to_rgb(color)
    mix = [round(255 - share * (255 - channel)) for channel in (red, green, blue)]
    return f"rgb({mix[0]}, {mix[1]}, {mix[2]})"


def _class_colorscale(n_classes: int) -> list:
    """Class i owns the band [i, i+1) of z, running from a pale to the full shade of its colour."""
    scale = []
    for index in range(n_classes):
        color = class_color(index)
        scale += [[index / n_classes, _blend_with_white(color, UNSURE_SHADE)], [(index + 1) / n_classes, color]]
    return scale


def _origins(grid: pd.DataFrame) -> pd.Series | None:
    """Per point, whether the model answered it or it was filled in from answered neighbours; None for a grid
    without a `scored` column (a baseline's, where every point is computed)."""
    if "scored" not in grid:
        return None
    return grid["scored"].map({True: "answered by the model", False: "filled in from answered neighbours"})


def _as_matrix(grid: pd.DataFrame, features: list[str], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x axis, y axis, values with one row per y) of a regular two-feature grid."""
    table = grid.pivot(index=features[1], columns=features[0], values=column)
    return table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy()


def _training_points(train: pd.DataFrame, features: list[str], target: str, classes: list[str] | None) -> list:
    """The training rows as markers: one trace (and legend entry) per class, or one trace for regression."""
    outline = {"width": 1, "color": "white"}
    if not classes:
        return [go.Scatter(
            x=train[features[0]], y=train[features[1]], mode="markers", name="training rows",
            marker={"color": "black", "size": 6, "line": outline}, customdata=train[target],
            hovertemplate=f"{target}=%{{customdata:.3g}}<extra></extra>",
        )]
    labels = train[target].astype(str)
    return [
        go.Scatter(x=train.loc[labels == label, features[0]], y=train.loc[labels == label, features[1]],
                   mode="markers", name=f"train: {label}",
                   marker={"color": class_color(index), "size": 7, "line": {"width": 1, "color": "black"}})
        for index, label in enumerate(classes)
    ]


def _map_layout(figure: go.Figure, grid: pd.DataFrame, features: list[str], title: str) -> go.Figure:
    """Every map of a run on the same square: the grid's extent on both axes whatever its resolution (a coarse
    first picture, the full map that replaces it, the spread and the variance maps), and a square plotting area
    however wide its slot, so maps side by side compare point by point."""
    x_range, y_range = ([grid[name].min(), grid[name].max()] for name in features)
    figure.update_layout(title=title, legend={"orientation": "h", "y": -0.15})
    figure.update_xaxes(title=features[0], range=x_range, constrain="domain")
    # scaleratio: pixels per y unit over pixels per x unit, so both ranges take the same length on screen.
    figure.update_yaxes(title=features[1], range=y_range, constrain="domain", scaleanchor="x",
                        scaleratio=(x_range[1] - x_range[0]) / (y_range[1] - y_range[0]))
    return figure


def class_boundary_figure(grid: pd.DataFrame, features: list[str], classes: list[str], train: pd.DataFrame,
                          target: str, title: str) -> go.Figure:
    """Colour = predicted class, shade = its probability (pale where the classes are equally likely)."""
    proba = grid[[f"p_{label}" for label in classes]].to_numpy()
    winner = proba.argmax(axis=1)
    uniform = 1 / len(classes)
    confidence = (proba.max(axis=1) - uniform) / (1 - uniform)
    text = pd.Series([f"{classes[i]} (p={p:.2f})" for i, p in zip(winner, proba.max(axis=1))], index=grid.index)
    origins = _origins(grid)
    # Stay inside the class's own band of z: a confidence of exactly 1 would reach the next class's colour.
    grid = grid.assign(_z=winner + np.clip(confidence, 0, 0.999),
                       _text=text if origins is None else text + "<br>" + origins)
    x, y, z = _as_matrix(grid, features, "_z")
    text = _as_matrix(grid, features, "_text")[2]
    heatmap = go.Heatmap(
        x=x, y=y, z=z, text=text, zmin=0, zmax=len(classes), colorscale=_class_colorscale(len(classes)),
        hovertemplate=f"{features[0]}=%{{x:.3g}}, {features[1]}=%{{y:.3g}}<br>%{{text}}<extra></extra>",
        colorbar={"title": "class", "tickvals": np.arange(len(classes)) + 0.5, "ticktext": classes},
    )
    figure = go.Figure([heatmap, *_training_points(train, features, target, classes)])
    return _map_layout(figure, grid, features, title)


def value_map_figure(grid: pd.DataFrame, features: list[str], column: str, train: pd.DataFrame, target: str,
                     classes: list[str] | None, title: str, colorscale: str = "Viridis",
                     value_range: tuple[float, float] | None = None, value_label: str | None = None) -> go.Figure:
    """A heatmap of one grid column (a regression prediction, a std, a vote entropy) under the training rows."""
    x, y, z = _as_matrix(grid, features, column)
    low, high = value_range or (None, None)
    label = value_label or column
    origins = _origins(grid)
    text = None if origins is None else _as_matrix(grid.assign(_origin=origins), features, "_origin")[2]
    heatmap = go.Heatmap(
        x=x, y=y, z=z, text=text, zmin=low, zmax=high, colorscale=colorscale, colorbar={"title": label},
        hovertemplate=f"{features[0]}=%{{x:.3g}}, {features[1]}=%{{y:.3g}}<br>{label}=%{{z:.3g}}"
                      + ("" if text is None else "<br>%{text}") + "<extra></extra>",
    )
    figure = go.Figure([heatmap, *_training_points(train, features, target, classes)])
    return _map_layout(figure, grid, features, title)


def regression_band_figure(grid: pd.DataFrame, feature: str, train: pd.DataFrame, target: str,
                           title: str) -> go.Figure:
    """A 1-D regression: the mean prediction, a ± one std band when the grid has `std`, the training rows,
    and the region beyond the training range (where the model extrapolates) shaded."""
    grid = grid.sort_values(feature)
    x, mean = grid[feature], grid["y_pred"]
    traces = []
    if "std" in grid:
        traces += [
            go.Scatter(x=x, y=mean - grid["std"], mode="lines", line={"width": 0}, showlegend=False,
                       hoverinfo="skip"),
            go.Scatter(x=x, y=mean + grid["std"], mode="lines", line={"width": 0}, fill="tonexty",
                       fillcolor="rgba(31, 119, 180, 0.25)", name="mean ± std", hoverinfo="skip"),
        ]
    origins = _origins(grid)
    hover = {} if origins is None else {
        "text": origins, "hovertemplate": f"{feature}=%{{x:.3g}}, {target}=%{{y:.3g}}<br>%{{text}}<extra></extra>"}
    traces += [
        go.Scatter(x=x, y=mean, mode="lines", name="prediction", line={"color": class_color(0)}, **hover),
        go.Scatter(x=train[feature], y=train[target], mode="markers", name="training rows",
                   marker={"color": "black", "size": 5}),
    ]
    figure = go.Figure(traces)
    seen_low, seen_high = train[feature].min(), train[feature].max()
    for start, end in ((x.min(), seen_low), (seen_high, x.max())):
        if end > start:
            figure.add_vrect(x0=start, x1=end, fillcolor=EXTRAPOLATION_FILL, line_width=0, layer="below",
                             annotation_text="extrapolation", annotation_position="top left")
    figure.update_layout(title=title, xaxis_title=feature, yaxis_title=target,
                         legend={"orientation": "h", "y": -0.15})
    return figure


def prediction_figure(grid: pd.DataFrame, features: list[str], train: pd.DataFrame, target: str,
                      classes: list[str] | None, title: str, value_range: tuple[float, float] | None = None):
    """The predictions over a grid: a class map (with `classes`), a regression surface (on `value_range`, else the
    grid's own), or a 1-D regression's line with its band."""
    if len(features) == 1:
        return regression_band_figure(grid, features[0], train, target, title)
    if classes:
        return class_boundary_figure(grid, features, classes, train, target, title)
    return value_map_figure(grid, features, "y_pred", train, target, None, title, value_range=value_range,
                            value_label=f"predicted {target}")
