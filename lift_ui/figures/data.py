"""Figures of the data itself, before any model is involved."""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def scatter(frame: pd.DataFrame, x: str, y: str, color: str | None = None, color_order=None,
            title: str | None = None) -> go.Figure:
    """frame[y] against frame[x]. Text colours (class labels) get one legend entry each, numbers a colour scale.

    color_order fixes the legend order of the labels (e.g. "2" before "10"), which pandas' order would not give.
    """
    figure = px.scatter(
        frame, x=x, y=y, color=color, title=title,
        category_orders={color: list(color_order)} if color and color_order is not None else None,
        template="plotly_white",
    )
    figure.update_traces(marker={"size": 6, "opacity": 0.8})
    figure.update_layout(height=420, margin={"l": 40, "r": 20, "t": 50 if title else 20, "b": 40})
    return figure
