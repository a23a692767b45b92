"""Logos: the letters drawn, their colours, positions and heights; figures from result files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dnalift.errors import DnaliftError, StoreError
from dnalift.io.store import ResultWriter, open_results
from dnalift.plotting import BASE_COLORS, plot_logo, plot_result


def letters(ax):
    """(x centre, bottom, top, colour) of each letter patch drawn on ax, left to right."""
    out = []
    for patch in ax.patches:
        ext = patch.get_path().get_extents()
        out.append((round((ext.x0 + ext.x1) / 2, 3), ext.y0, ext.y1, tuple(np.round(patch.get_facecolor()[:3], 3))))
    return sorted(out)


def test_contribution_logo_draws_the_observed_bases():
    # sequence A C N T G, contributions 0.5, -1, (N), 2, 0
    scores = np.zeros((4, 5))
    scores[0, 0], scores[1, 1], scores[3, 3] = 0.5, -1.0, 2.0
    scores[2, 4] = 0.0  # a zero contribution draws nothing
    ax = plot_logo(scores, start=100, title="x")
    drawn = letters(ax)
    assert [d[0] for d in drawn] == [100, 101, 103]  # one letter per nonzero position, at start + j
    assert [d[3] for d in drawn] == [BASE_COLORS["A"], BASE_COLORS["C"], BASE_COLORS["T"]]
    (_, a_lo, a_hi, _), (_, c_lo, c_hi, _), (_, t_lo, t_hi, _) = drawn
    assert 0 <= a_lo < a_hi <= 0.5 and -1.0 <= c_lo < c_hi <= 1e-9 and 0 <= t_lo < t_hi <= 2.0  # heights
    assert t_hi > 1.9 and c_lo < -0.9  # letters fill their height (logomaker leaves a small margin)
    assert ax.get_ylim() == (-1.0, 2.0)  # the score range
    assert ax.get_xlim() == (99.5, 104.5)
    assert ax.get_title() == "x"


def test_hypothetical_logo_stacks_four_letters():
    scores = np.array([[1.0, -0.5], [0.5, -0.25], [-0.5, 0.25], [-1.0, 2.0]])
    ax = plot_logo(scores)
    drawn = letters(ax)
    assert len(drawn) == 8
    # y-range: positives stack to 1.5 (position 0) and 2.25 (position 1); negatives to -1.5 and -0.75
    assert ax.get_ylim() == (-1.5, 2.25)
    tops = max(d[2] for d in drawn if d[0] == 0)
    bottoms = min(d[1] for d in drawn if d[0] == 0)
    assert 1.4 < tops <= 1.5 and -1.5 <= bottoms < -1.4


def test_logo_refuses_bad_shapes():
    with pytest.raises(DnaliftError, match=r"\(4, length\)"):
        plot_logo(np.zeros((10, 4)))
    with pytest.raises(DnaliftError, match="NaN"):
        plot_logo(np.full((4, 3), np.nan))
    assert plot_logo(np.zeros((4, 3))).get_ylim() == (-1.0, 1.0)


@pytest.fixture
def result(tmp_path):
    n, length = 3, 40
    raw = np.zeros((n, 4, length), np.int8)
    raw[:, 2, :] = 1  # all G
    hyp = np.full((n, 4, length), 0.01, np.float32)
    hyp[1, 2, 30] = 5.0  # the strongest position of sequence 1
    hyp[1, 0, 30] = -1.0
    path = tmp_path / "out.h5"
    regions = {"chrom": ["chr3"] * n, "start": [1000, 2000, 3000], "end": [1040, 2040, 3040], "strand": ["+", "-", "+"]}
    with ResultWriter(path, n=n, length=length, attrs={}, regions=True) as w:
        w.write(0, raw=raw, hypothetical=hyp, names=["a", "b", "c"], predictions=[0.25, 1.5, 3.0],
                reference_predictions=np.zeros(n), deltas=np.zeros(n), regions=regions)
    with open_results(path) as r:
        yield r


def test_plot_result_png(result, tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    fig = plot_result(result, "b", hypothetical=True)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "b — prediction 1.5"
    assert "chr3:2000-2040 - (0-based, end exclusive)" in fig.axes[1].get_xlabel()
    assert fig.axes[1].get_xlabel().startswith("position in sequence (0-based)")
    assert len(letters(fig.axes[0])) == 40 and len(letters(fig.axes[1])) == 160
    assert fig.axes[1].get_ylim() == (-1.0, pytest.approx(5.02))  # G 5 + C 0.01 + T 0.01 above, A -1 below
    png = tmp_path / "logo.png"
    fig.savefig(png, dpi=40)
    image = matplotlib.image.imread(png)
    width, height = fig.get_size_inches() * 40
    assert image.shape[:2] == (round(height), round(width)) and image[..., :3].std() > 0.05
    assert plt.get_fignums() == []  # nothing registered with pyplot, nothing shown


def test_plot_result_windows(result):
    fig = plot_result(result, 1, around_max=10)
    ax = fig.axes[0]
    assert ax.get_xlim() == (24.5, 34.5)  # 10 positions centred on position 30
    assert [d[0] for d in letters(ax)] == list(range(25, 35))
    assert ax.get_ylim()[1] == pytest.approx(5.0)
    fig = plot_result(result, 1, around_max=100)  # wider than the sequence: all of it
    assert fig.axes[0].get_xlim() == (-0.5, 39.5)
    fig = plot_result(result, 0, start=5, end=8)
    assert [d[0] for d in letters(fig.axes[0])] == [5, 6, 7]
    with pytest.raises(DnaliftError, match="not a window"):
        plot_result(result, 0, start=8, end=5)
    with pytest.raises(DnaliftError, match="not both"):
        plot_result(result, 0, start=1, around_max=4)
    with pytest.raises(StoreError, match="out of range"):
        plot_result(result, 3)
    with pytest.raises(StoreError, match="no sequence named"):
        plot_result(result, "z")


def test_io_modules_do_not_import_matplotlib():
    code = ("import sys, dnalift.io.store, dnalift.io.modisco, dnalift.io.bigwig, dnalift.plotting; "
            "sys.exit(int(any(m.startswith(('matplotlib', 'logomaker')) for m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
