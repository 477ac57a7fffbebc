"""Figures without pyplot: the library never imports ``matplotlib.pyplot`` nor switches the user's backend
(``matplotlib.use``); each figure is a :class:`matplotlib.figure.Figure` on its own Agg canvas, saved with
:func:`xattr.utils.io.atomic_savefig`, and freed with the last reference (no pyplot figure manager holds it).
"""

from __future__ import annotations


def agg_figure(**kwargs):
    """A new :class:`~matplotlib.figure.Figure` (``kwargs``: e.g. ``figsize``) drawn on a ``FigureCanvasAgg``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure
