"""Sequence logos of contribution scores (logomaker), drawn on a matplotlib Axes.

Colours are the usual ones: A green, C blue, G orange, T red. A contribution logo (``projected_shap/seq``)
has one letter per position, the observed base, as tall as its contribution: above the axis when it
raises the prediction, below (upright, not mirrored) when it lowers it. A hypothetical logo
(``shap/seq``) stacks all four letters at each position, positive ones above and negative ones below,
as chrombpnet and TF-MoDISco reports draw them.

Figures are plain :class:`matplotlib.figure.Figure` objects (not registered with pyplot, so nothing is
shown and nothing leaks); save them with ``fig.savefig("logo.png")``. matplotlib and logomaker are
imported when a function is first called; when pyplot is not yet loaded and ``MPLBACKEND`` is not set,
the Agg backend is selected (logomaker imports pyplot), so no display is needed.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np

from dnalift.errors import DnaliftError, StoreError

__all__ = ["BASE_COLORS", "plot_logo", "plot_result", "plot_variant"]

#: letter colours (A green, C blue, G orange, T red), as RGB
BASE_COLORS = {"A": (0.0, 0.5, 0.0), "C": (0.0, 0.0, 1.0), "G": (1.0, 0.65, 0.0), "T": (1.0, 0.0, 0.0)}


def _matplotlib():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import logomaker  # noqa: F401  (imports pyplot)
    from matplotlib.figure import Figure

    return Figure


def _as_scores(scores: Any) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != 4:
        raise DnaliftError(f"scores must have shape (4, length) with bases A, C, G, T; got {scores.shape}")
    if not np.isfinite(scores).all():
        raise DnaliftError("scores contain NaN or infinity; check the result file with `dnalift validate`")
    return scores


def _width(length: int) -> float:
    return float(min(30.0, max(6.0, 0.12 * length)))


def plot_logo(scores, *, ax=None, title: str | None = None, start: int = 0):
    """Draw a sequence logo of ``scores`` and return the Axes.

    Parameters
    ----------
    scores : array (4, L)
        Per-base scores, rows A, C, G, T. For contributions give ``projected_shap/seq`` (zero except at
        the observed base): one letter per position of height = its contribution. For hypothetical scores
        give ``shap/seq``: four stacked letters per position.
    ax : matplotlib Axes, optional
        Where to draw; by default a new Figure (``ax.figure``) of a width that follows L.
    title : str, optional
    start : int
        The x coordinate of the first column (0-based positions are labelled ``start .. start + L - 1``).

    Returns
    -------
    matplotlib.axes.Axes
        The y-range is the range of the stacked letters: from the sum of the negative scores of the most
        negative position to the sum of the positive scores of the most positive one.
    """
    Figure = _matplotlib()
    import logomaker
    import pandas as pd

    scores = _as_scores(scores)
    length = scores.shape[1]
    if ax is None:
        fig = Figure(figsize=(_width(length), 2.2), layout="constrained")
        ax = fig.add_subplot()
    df = pd.DataFrame(scores.T, columns=list("ACGT"), index=np.arange(int(start), int(start) + length))
    with warnings.catch_warnings():  # all-zero scores: logomaker sets equal y-limits; replaced below
        warnings.filterwarnings("ignore", message="Attempting to set identical low and high ylims")
        logomaker.Logo(df, ax=ax, color_scheme=BASE_COLORS, flip_below=False, baseline_width=0.5,
                       show_spines=False)
    # logomaker widens the limits to those of axes sharing x or y (still (0, 1) when empty): set them here
    ax.set_xlim(int(start) - 0.5, int(start) + length - 0.5)
    low = float(min(np.minimum(scores, 0).sum(axis=0).min(), 0.0))
    high = float(max(np.maximum(scores, 0).sum(axis=0).max(), 0.0))
    ax.set_ylim((low, high) if high > low else (-1.0, 1.0))  # all zero: a visible, symmetric range
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(True)
    if title:
        ax.set_title(title)
    return ax


def _window(length: int, start, end, around_max, per_position: np.ndarray) -> tuple[int, int]:
    if around_max is not None:
        if start is not None or end is not None:
            raise DnaliftError("give either start/end or around_max, not both")
        width = int(around_max)
        if width < 1:
            raise DnaliftError(f"around_max must be a positive width, got {around_max}")
        width = min(width, length)
        center = int(np.argmax(np.abs(per_position)))
        s = min(max(center - width // 2, 0), length - width)
        return s, s + width
    s = 0 if start is None else int(start)
    e = length if end is None else int(end)
    if not 0 <= s < e <= length:
        raise DnaliftError(f"start={start}, end={end} is not a window of the {length} positions; "
                           f"need 0 <= start < end <= {length}")
    return s, e


def plot_result(reader, index, *, start: int | None = None, end: int | None = None, around_max: int | None = None,
                hypothetical: bool = False):
    """A Figure with the contribution logo of one sequence of a result file.

    Parameters
    ----------
    reader : ResultReader
        From :func:`dnalift.io.store.open_results`.
    index : int or str
        Row number or sequence name.
    start, end : int, optional
        Positions ``[start, end)`` of the sequence to draw (default all).
    around_max : int, optional
        Draw this many positions centred on the position of largest absolute contribution
        (instead of start/end).
    hypothetical : bool
        Add a second panel with the hypothetical scores of all four bases (stacked letters).

    Returns
    -------
    matplotlib.figure.Figure
        Titled ``"<name> — prediction <p>"``; x in 0-based positions of the sequence (and the genome
        window, 0-based half-open like BED, in the axis label when the file has regions).
    """
    Figure = _matplotlib()
    if isinstance(index, str):
        row = reader.index_of(index)
    else:
        row = int(index)
        if not 0 <= row < reader.n:
            raise StoreError(f"sequence index {index} is out of range: {reader.path} has {reader.n} sequences "
                             f"(0-{reader.n - 1})")
    projected = reader.projected(row)
    s, e = _window(reader.length, start, end, around_max, projected.sum(axis=0))
    name = reader.names[row]
    prediction = float(reader.predictions(row))

    panels = 2 if hypothetical else 1
    fig = Figure(figsize=(_width(e - s), 2.4 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    plot_logo(projected[:, s:e], ax=axes[0], start=s, title=f"{name} — prediction {prediction:.4g}")
    axes[0].set_ylabel("contribution")
    if hypothetical:
        plot_logo(reader.hypothetical(row)[:, s:e], ax=axes[1], start=s)
        axes[1].set_ylabel("hypothetical")
    region = reader.region(row)
    label = "position in sequence (0-based)"
    if region is not None:
        chrom, r_start, r_end, strand = region
        label += f"; window {chrom}:{r_start}-{r_end} {strand} (0-based, end exclusive)"
    axes[-1].set_xlabel(label)
    return fig

def plot_variant(reader, variant_id: str, *, flank: int = 20, start: int | None = None, end: int | None = None):
    """A Figure with the contribution logos of both alleles of one variant, one above the other.

    Parameters
    ----------
    reader : ResultReader
        Of a file written by ``dnalift variants``.
    variant_id : str
        The variant (its ``variant_ids`` entry).
    flank : int
        Positions drawn on each side of the longer allele (when ``start``/``end`` are not given).
    start, end : int, optional
        Window positions ``[start, end)`` to draw instead.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels sharing one y-range: the reference allele's row above, the alternative's below, each titled
        with its allele and prediction; the allele's columns shaded in each. x is the 0-based position in the
        window (the allele starts at ``offset``, ``L // 2``).
    """
    Figure = _matplotlib()
    ref_row = reader.variant_row(variant_id)
    v = reader.variants_of(slice(ref_row, ref_row + 2))
    offset = int(v["offset"][0])
    spans = (len(v["ref"][0]), len(v["alt"][0]))
    if start is None and end is None:
        s = max(0, offset - int(flank))
        e = min(reader.length, offset + max(spans + (1,)) + int(flank))
    else:
        s, e = _window(reader.length, start, end, None, np.zeros(reader.length))
    projected = reader.projected(slice(ref_row, ref_row + 2))[:, :, s:e]
    pred = reader.predictions(slice(ref_row, ref_row + 2))
    fig = Figure(figsize=(_width(e - s), 4.6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    pos = int(v["pos"][0]) + 1
    for k, ax in enumerate(axes):
        allele = (v["ref"][0], v["alt"][0])[k] or "-"
        plot_logo(projected[k], ax=ax, start=s,
                  title=f"{('reference', 'alternative')[k]} allele {allele} — prediction {float(pred[k]):.4g}")
        if spans[k]:
            ax.axvspan(offset - 0.5, offset + spans[k] - 0.5, color="0.85", zorder=-1)
        else:  # an empty allele: a line where the other allele's bases would start
            ax.axvline(offset - 0.5, color="0.5", linestyle="--", zorder=-1)
        ax.set_ylabel("contribution")
    low = float(min(np.minimum(projected, 0).sum(axis=1).min(), 0.0))
    high = float(max(np.maximum(projected, 0).sum(axis=1).max(), 0.0))
    axes[0].set_ylim((low, high) if high > low else (-1.0, 1.0))
    fig.suptitle(f"{variant_id} ({v['chrom'][0]}:{pos} {v['ref'][0] or '-'}>{v['alt'][0] or '-'}): "
                 f"change of prediction {float(pred[1] - pred[0]):+.4g}")
    axes[-1].set_xlabel(f"position in the window (0-based; the allele starts at {offset}, shaded)")
    return fig
