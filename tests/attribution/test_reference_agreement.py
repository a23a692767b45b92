"""dnalift against an independent float64 reference implementation of DeepLIFT (issue 9).

``deeplift_reference`` is a slow, loop-by-loop NumPy implementation of the original kundajelab/deeplift
conventions (see its module docstring). This file checks the reference by hand on small examples, checks that it
sums to delta, and then compares dnalift's contributions and hypothetical scores with it on a table of random
architectures × seeds × modes × max rules, to 1e-9 relative in float64.
"""

from __future__ import annotations

import functools
import warnings
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

import dnalift
from conftest import random_one_hot
from deeplift_reference import Conv, Dense, Elementwise, Pool, deeplift_pair, reference_deeplift
from conftest import export

F64 = torch.float64
MODES = ("rescale", "revealcancel", "genomics")
MAX_RULES = ("exact", "gradient")
AGREEMENT = 1e-9  # relative to the largest |value| of the reference's array
CONSERVATION = 1e-10
N_SEQUENCES, N_REFERENCES = 2, 3
SEEDS = (0, 1, 2)


def dnalift_scores(model, X, R, *, target, mode, max_rule, expect_leak=False):
    """dnalift's contributions and hypothetical scores as NumPy float64 arrays (None where it gives none).

    ``expect_leak`` silences the ConservationWarning where the case does not sum to delta by design (the
    gradient max rule on a reference that varies within a window).
    """
    program = model if isinstance(model, torch.export.ExportedProgram) else export(model, torch.as_tensor(X))
    with warnings.catch_warnings():
        if expect_leak:
            warnings.simplefilter("ignore", dnalift.ConservationWarning)
        result = dnalift.attribute(program, torch.as_tensor(X, dtype=F64), torch.as_tensor(R, dtype=F64),
                                   target=target, rule=mode, max_rule=max_rule, dtype=F64)
    hypothetical = None if result.hypothetical is None else result.hypothetical.numpy()
    return result.contributions.numpy(), hypothetical


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected|, relative to the largest |expected| (absolute where expected is all zero)."""
    scale = np.abs(expected).max()
    difference = np.abs(actual - expected).max()
    return float(difference / scale) if scale > 0 else float(difference)


def set_weights(module: nn.Module, weight, bias=None) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(weight, dtype=F64).reshape(module.weight.shape))
        if bias is not None:
            module.bias.copy_(torch.as_tensor(bias, dtype=F64).reshape(module.bias.shape))
    return module


# ---------------------------------------------------------------------------------------------------------------
# The reference by hand


def cause1_layers():
    """Issue 9, cause 1: Linear(2→3) → ReLU → Linear(3→1) → ReLU → Linear(1→1) (weight 1, bias 0)."""
    first = set_weights(nn.Linear(2, 3).double(), [[1, -1], [1, 0], [0, 1]], [-0.5, 0, 0])
    second = set_weights(nn.Linear(3, 1).double(), [[1, 1, -1]], [-0.1])
    return [first, nn.ReLU(), second, nn.ReLU(), set_weights(nn.Linear(1, 1).double(), [[1.0]], [0.0])]


CAUSE1_X = np.array([[0.7, 0.3]])
CAUSE1_R = np.zeros((1, 1, 2))
CAUSE1_REVEALCANCEL = np.array([[0.7 * 71 / 98, -0.3 * 29 / 42]])  # (0.50714, -0.20714)


@pytest.mark.parametrize("mode", ["revealcancel", "genomics"])
def test_reference_cause1_dead_unit_with_cancelling_parts_by_hand(mode):
    """x = (0.7, 0.3), reference 0; every ReLU follows a dense layer, so genomics is RevealCancel here.

    Layer 1: z = (−0.1, 0.7, 0.3), z⁰ = (−0.5, 0, 0), Δz = (0.4, 0.7, 0.3); the terms w·Δx of unit 1 are
    0.7 and −0.3, so Δz₁⁺ = 0.7, Δz₁⁻ = −0.3; units 2 and 3 have only positive parts 0.7 and 0.3.
    ReLU 1 (RevealCancel): unit 1 is dead at x (−0.1) and at x⁰ (−0.5), but
    Δh₁⁺ = ½[f(0.2) − f(−0.5)] + ½[f(−0.1) − f(−0.8)] = 0.1 and Δh₁⁻ = ½[f(−0.8) − f(−0.5)] + ½[f(−0.1) − f(0.2)]
    = −0.1: m₁⁺ = 0.1/0.7 = 1/7, m₁⁻ = 0.1/0.3 = 1/3; units 2 and 3 are linear here, m⁺ = 1.
    Layer 2: Δh = (0, 0.7, 0.3) (forward differences), terms w·Δh = (0, 0.7, −0.3): Δz⁺ = 0.7, Δz⁻ = −0.3,
    z⁰ = −0.1. ReLU 2: Δy⁺ = ½[f(0.6) − 0] + ½[f(0.3) − f(−0.4)] = 0.45, Δy⁻ = ½·0 + ½[f(0.3) − f(0.6)] = −0.15:
    m⁺ = 9/14, m⁻ = 1/2. The last Linear sends m = 1 back to both parts.
    Back through layer 2, by the sign of Δh: h₁ has Δh₁ = 0 exactly, so it gets ½(9/14 + 1/2)·1 = 4/7; h₂
    (Δ > 0, w = 1) gets m⁺ = 9/14; h₃ (Δ > 0, w = −1) gets m⁻·w = −1/2.
    Through ReLU 1: h₁'s input gets m⁺ = 4/7 · 1/7 = 4/49 and m⁻ = 4/7 · 1/3 = 4/21; h₂ 9/14, h₃ −1/2.
    Back through layer 1, Δx > 0 for both inputs: x₁ (w = 1, 1, 0) gets 4/49 + 9/14 = 71/98; x₂ (w = −1, 0, 1)
    gets m₁⁻·(−1) + m₃⁺·1 = −4/21 − 1/2 = −29/42. Contributions 0.7·71/98 = 0.50714 and 0.3·(−29/42) = −0.20714,
    summing to Δo = 0.3. (Giving h₁ the positive-sign multiplier 9/14 instead gives (0.5, −0.2).)
    """
    contributions, _ = reference_deeplift(cause1_layers(), CAUSE1_X, CAUSE1_R, target=0, mode=mode,
                                          max_rule="exact")
    np.testing.assert_allclose(contributions, CAUSE1_REVEALCANCEL, rtol=0, atol=1e-15)
    traces = deeplift_pair(cause1_layers(), CAUSE1_X[0], CAUSE1_R[0, 0], target=0, mode=mode,
                           max_rule="exact").traces
    relu1 = traces[1]
    assert relu1.out[0] == relu1.out0[0] == 0.0  # dead at both
    np.testing.assert_allclose([relu1.pos[0], relu1.neg[0]], [0.1, -0.1], atol=1e-15)
    np.testing.assert_allclose([relu1.m_pos[0], relu1.m_neg[0]], [1 / 7, 1 / 3], atol=1e-15)
    np.testing.assert_allclose([traces[3].m_pos[0], traces[3].m_neg[0]], [9 / 14, 1 / 2], atol=1e-15)


def test_reference_cause1_rescale_by_hand():
    """Rescale on the same model: ReLU 1 has m = (0/0.4, 0.7/0.7, 0.3/0.3) = (0, 1, 1); ReLU 2 has
    Δz = 0.3 − (−0.1) = 0.4 and Δy = 0.3, m = 0.75. Back: h gets 0.75·(1, 1, −1), ReLU 1's inputs (0, 0.75, −0.75);
    x₁ (column (1, 1, 0)) gets 0.75 and x₂ (column (−1, 0, 1)) gets −0.75: contributions (0.525, −0.225).
    """
    contributions, _ = reference_deeplift(cause1_layers(), CAUSE1_X, CAUSE1_R, target=0, mode="rescale",
                                          max_rule="exact")
    np.testing.assert_allclose(contributions, [[0.525, -0.225]], rtol=0, atol=1e-15)


def cause2_layers():
    """Issue 9, cause 2, on 4 channels (the last two with zero weight, so that dnalift gives hypothetical
    scores): Conv1d(4→1, k=1) w = (1, −1, 0, 0), b = −1 → ReLU → MaxPool1d(2) → Flatten → Linear(1→1) w = 1."""
    conv = set_weights(nn.Conv1d(4, 1, 1).double(), [1.0, -1.0, 0.0, 0.0], [-1.0])
    return [conv, nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), set_weights(nn.Linear(1, 1).double(), [[1.0]], [0.0])]


CAUSE2_X = np.array([[[3.0, 0.0], [2.5, 0.0], [0.0, 0.0], [0.0, 0.0]]])
CAUSE2_R = np.array([[[[0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]])
CAUSE2 = {  # (contributions, hypothetical), each (4 channels, 2 positions), worked out in the test below
    ("rescale", "exact"): ([[0, -1], [0, 0], [0, 0], [0, 0]], [[0, -0.5], [0, -1.5], [0, -1], [0, -1]]),
    ("revealcancel", "exact"): ([[1, -1], [-1, 0], [0, 0], [0, 0]],
                                [[1 / 3, -0.5], [-0.4, -1.5], [0, -1], [0, -1]]),
    ("rescale", "gradient"): (np.zeros((4, 2)), np.zeros((4, 2))),
    ("revealcancel", "gradient"): ([[1, 0], [-1, 0], [0, 0], [0, 0]], [[1 / 3, 0], [-0.4, 0], [0, 0], [0, 0]]),
}
CAUSE2[("genomics", "exact")] = CAUSE2[("rescale", "exact")]  # the ReLU follows a convolution: Rescale
CAUSE2[("genomics", "gradient")] = CAUSE2[("rescale", "gradient")]


@pytest.mark.parametrize("max_rule", MAX_RULES)
@pytest.mark.parametrize("mode", MODES)
def test_reference_cause2_max_pool_by_hand(mode, max_rule):
    """x = [[3, 0], [2.5, 0], 0, 0], reference [[0, 2], [0, 0], 0, 0] (channels × positions).

    Conv: z = (−0.5, −1), z⁰ = (−1, 1); ReLU: h = (0, 0), h⁰ = (0, 1). Pool: y = 0 at i* = 0 (first of the tie),
    y⁰ = 1 at j* = 1, Δy = −1. Exact rule: M = 1, i* gets M − y⁰ = 0 over Δh[0] = 0, so its coefficient is the
    gradient 1; j* gets (y − M)/Δh[1] = −1/−1 = 1. Gradient rule: coefficient 1 at i* only.
    Rescale: ReLU m = (0/0.5, −1/−2) = (0, 0.5), so the exact rule gives input multipliers (0, 0.5) on channel 0,
    (0, −0.5) on channel 1: contributions (0, −1) and (0, 0); the gradient rule gives 0 everywhere.
    RevealCancel: position 0 has terms 1·3 = 3 and −1·2.5 = −2.5 over z⁰ = −1: Δh⁺ = ½[f(2) − 0] + ½[f(−0.5) −
    f(−3.5)] = 1, Δh⁻ = −1, m⁺ = 1/3, m⁻ = 1/−2.5·−1 = 0.4; position 1 has Δz⁻ = −2 (from channel 0), Δz⁺ = 0
    over z⁰ = 1: Δh⁻ = −1, m⁻ = 0.5, and the zero part's limit m⁺ = (f′(1) + f′(−1))/2 = 0.5. Pool multipliers
    1 at both positions (exact) come back as m⁺ = m⁻ = 1. Inputs: channel 0 at position 0 (Δ = 3 > 0, w = 1)
    gets m⁺ = 1/3 (contribution 1); channel 1 at 0 (Δ = 2.5 > 0, w = −1) gets m⁻·w = −0.4 (−1); channel 0 at 1
    (Δ = −2 < 0, w = 1) gets m⁻ = 0.5 (−1); channel 1 at 1 (Δ = 0) gets ½(0.5 + 0.5)·(−1) = −0.5 (0).
    Contributions (1, −1, −1, 0), summing to Δy = −1. The gradient rule keeps only position 0: (1, 0, −1, 0).
    Hypothetical: m[b, l] − Σ_c m[c, l]·ref[c, l]; the reference is non-zero only at channel 0, position 1.
    """
    contributions, hypothetical = reference_deeplift(cause2_layers(), CAUSE2_X, CAUSE2_R, target=0, mode=mode,
                                                     max_rule=max_rule)
    expected_contributions, expected_hypothetical = CAUSE2[(mode, max_rule)]
    np.testing.assert_allclose(contributions[0], expected_contributions, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hypothetical[0], expected_hypothetical, rtol=0, atol=1e-15)


@pytest.mark.parametrize("max_rule", MAX_RULES)
@pytest.mark.parametrize("mode", MODES)
def test_dnalift_cause2_max_pool_matches_hand(mode, max_rule):
    """dnalift on the same example (issue 9: it gave (0, −1, 0, 0) under RevealCancel and the exact rule)."""
    model = nn.Sequential(*cause2_layers())
    contributions, hypothetical = dnalift_scores(model, CAUSE2_X, CAUSE2_R, target=0, mode=mode, max_rule=max_rule,
                                                 expect_leak=max_rule == "gradient")
    expected_contributions, expected_hypothetical = CAUSE2[(mode, max_rule)]
    np.testing.assert_allclose(contributions[0], expected_contributions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hypothetical[0], expected_hypothetical, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["revealcancel", "genomics"])
def test_dnalift_cause1_matches_hand(mode):
    """dnalift on the cause-1 model (issue 9: it gave (0.5, −0.2))."""
    model = nn.Sequential(*cause1_layers())
    contributions, _ = dnalift_scores(model, CAUSE1_X, CAUSE1_R, target=0, mode=mode, max_rule="exact")
    np.testing.assert_allclose(contributions, CAUSE1_REVEALCANCEL, rtol=0, atol=1e-12)


def min_layers():
    """2017 paper, Figure 3: o = ReLU(i₁) − ReLU(i₁ − i₂) = min(i₁, i₂) for non-negative inputs."""
    hidden = set_weights(nn.Linear(2, 2, bias=False).double(), [[1.0, 0.0], [1.0, -1.0]])
    return [hidden, nn.ReLU(), set_weights(nn.Linear(2, 1, bias=False).double(), [[1.0, -1.0]])]


@pytest.mark.parametrize("i1,i2", [(3.0, 5.0), (5.0, 3.0), (2.0, 2.0)])
def test_reference_figure3_min(i1, i2):
    """Reference 0. RevealCancel: h₂'s input has Δ⁺ = i₁, Δ⁻ = −i₂ over 0, so Δh₂⁺ = ½[i₁ + f(i₁ − i₂)],
    Δh₂⁻ = ½[f(i₁ − i₂) − i₁]; o = h₁ − h₂ gives i₁ the contribution i₁ − Δh₂⁺ = ½[i₁ − f(i₁ − i₂)] = ½min and i₂
    the contribution −Δh₂⁻ = ½min: each input gets half of min(i₁, i₂) (the paper's point). Rescale gives all of it
    to the smaller input: h₂ is off when i₁ ≤ i₂ (i₁ gets i₁ through h₁), on otherwise (i₁'s terms cancel, i₂ gets
    i₂). genomics: both ReLUs follow a dense layer, so RevealCancel."""
    low = min(i1, i2)
    X, R = np.array([[i1, i2]]), np.zeros((1, 1, 2))
    for mode in ("revealcancel", "genomics"):
        contributions, _ = reference_deeplift(min_layers(), X, R, target=0, mode=mode, max_rule="exact")
        np.testing.assert_allclose(contributions, [[low / 2, low / 2]], rtol=0, atol=1e-15)
    contributions, _ = reference_deeplift(min_layers(), X, R, target=0, mode="rescale", max_rule="exact")
    np.testing.assert_allclose(contributions, [[i1, 0.0]] if i1 <= i2 else [[0.0, i2]], rtol=0, atol=1e-15)


@pytest.mark.parametrize("nonlinearity,expected", [
    (nn.ReLU, [[-0.4, -0.1]]),  # m = (0 − 0.5)/(−2 − 0.5) = 0.2; m·w·Δx = 0.2·2·(−1), 0.2·(−1)·0.5
    (nn.Sigmoid, [[-0.4026051273437896, -0.1006512818359474]]),  # m = (σ(−2) − σ(0.5))/(−2.5) = 0.20130256367
], ids=["relu", "sigmoid"])
def test_reference_one_layer_rescale(nonlinearity, expected):
    """Linear(2→1) w = (2, −1), b = 0.5, then the nonlinearity; x = (−1, 0.5), reference 0: z = −2, z⁰ = 0.5."""
    layers = [set_weights(nn.Linear(2, 1).double(), [[2.0, -1.0]], [0.5]), nonlinearity()]
    contributions, _ = reference_deeplift(layers, np.array([[-1.0, 0.5]]), np.zeros((1, 1, 2)), target=0,
                                          mode="rescale", max_rule="exact")
    np.testing.assert_allclose(contributions, expected, rtol=0, atol=1e-15)


def one_hot_conv_layers():
    """Conv1d(4→1, k=1) w = (1, 2, 3, 4), b = −2.5 → ReLU → Flatten → Linear(2→1) w = (1, 1)."""
    conv = set_weights(nn.Conv1d(4, 1, 1).double(), [1.0, 2.0, 3.0, 4.0], [-2.5])
    return [conv, nn.ReLU(), nn.Flatten(), set_weights(nn.Linear(2, 1).double(), [[1.0, 1.0]], [0.0])]


ONE_HOT_GA = np.array([[[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])  # "GA"
UNIFORM = np.full((1, 1, 4, 2), 0.25)


def test_reference_one_hot_rescale_with_hypothetical():
    """x = "GA", reference 0.25 everywhere: z⁰ = 2.5 − 2.5 = 0 at both positions; z = (0.5, −1.5).
    Position 0: Δh = 0.5 = Δz, m = 1, input multipliers w = (1, 2, 3, 4), contributions w·(x − 0.25) =
    (−0.25, −0.5, 2.25, −1), hypothetical w_b − Σ_c w_c·0.25 = w_b − 2.5 = (−1.5, −0.5, 0.5, 1.5).
    Position 1: Δh = 0, Δz = −1.5, m = 0: nothing. Total 0.5 = Δo."""
    contributions, hypothetical = reference_deeplift(one_hot_conv_layers(), ONE_HOT_GA, UNIFORM, target=0,
                                                     mode="rescale", max_rule="exact")
    np.testing.assert_allclose(contributions[0, :, 0], [-0.25, -0.5, 2.25, -1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(hypothetical[0, :, 0], [-1.5, -0.5, 0.5, 1.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(contributions[0, :, 1], 0.0, atol=0)
    np.testing.assert_allclose(hypothetical[0, :, 1], 0.0, atol=0)


def test_reference_one_hot_revealcancel_by_hand():
    """The same model under RevealCancel (z⁰ = 0 at both positions).
    Position 0 ("G"): terms w·Δx = (−0.25, −0.5, 2.25, −1): Δz⁺ = 2.25, Δz⁻ = −1.75; Δh⁺ = ½·2.25 + ½[f(0.5) −
    f(−1.75)] = 1.375, Δh⁻ = ½·0 + ½[0.5 − 2.25] = −0.875; m⁺ = 11/18, m⁻ = 1/2. G (Δx > 0, w > 0) gets 3·11/18,
    contribution 0.75·11/6 = 1.375; A, C, T (Δx < 0, w > 0) get m⁻·w: contributions −0.25·w/2 = −0.125, −0.25, −0.5.
    Position 1 ("A"): terms (0.75, −0.5, −0.75, −1): Δz⁺ = 0.75, Δz⁻ = −2.25; Δh⁺ = ½·0.75 + ½[f(−1.5) − f(−2.25)]
    = 0.375, Δh⁻ = −0.375: m⁺ = 1/2, m⁻ = 1/6. A gets 1/2 (contribution 0.375); C, G, T get w/6: contributions
    −0.25·(2, 3, 4)/6 = −1/12, −1/8, −1/6. Totals 0.5 and 0, as Δh."""
    contributions, hypothetical = reference_deeplift(one_hot_conv_layers(), ONE_HOT_GA, UNIFORM, target=0,
                                                     mode="revealcancel", max_rule="exact")
    np.testing.assert_allclose(contributions[0].T, [[-0.125, -0.25, 1.375, -0.5], [0.375, -1 / 12, -1 / 8, -1 / 6]],
                               rtol=0, atol=1e-15)
    m = np.array([[1 / 2, 1.0, 33 / 18, 2.0], [1 / 2, 1 / 3, 1 / 2, 2 / 3]])  # per position, A C G T
    np.testing.assert_allclose(hypothetical[0].T, m - (0.25 * m).sum(axis=1, keepdims=True), rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# Random architectures


L = nn.Linear


def chain(widths, nonlinearity=nn.ReLU):
    """Flatten, then Linear + nonlinearity for each hidden width, then Linear(→2)."""
    layers = [nn.Flatten()]
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [L(n_in, n_out), nonlinearity()]
    return layers + [L(widths[-1], 2)]


ARCHITECTURES = {  # name: (length, layers, weight gain)
    "dense_on_input": (12, lambda: chain([48, 6]), 2.0),
    "relu_chain_2": (10, lambda: chain([40, 8, 6]), 2.0),
    "relu_chain_3": (10, lambda: chain([40, 8, 8, 6]), 2.0),
    "relu_chain_4": (10, lambda: chain([40, 8, 8, 6, 6]), 2.0),
    "conv_relu_maxpool_dense": (20, lambda: [nn.Conv1d(4, 4, 5), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                                             L(32, 6), nn.ReLU(), L(6, 2)], 2.0),
    "conv_stride2_maxpool": (25, lambda: [nn.Conv1d(4, 4, 5, stride=2), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                                          L(20, 6), nn.ReLU(), L(6, 2)], 2.0),
    "maxpool_overlapping": (20, lambda: [nn.Conv1d(4, 4, 3), nn.ReLU(), nn.MaxPool1d(3, stride=2), nn.Flatten(),
                                         L(32, 6), nn.ReLU(), L(6, 2)], 2.0),
    "maxpool_stride1": (16, lambda: [nn.Conv1d(4, 3, 3), nn.ReLU(), nn.MaxPool1d(4, stride=1), nn.Flatten(),
                                     L(33, 6), nn.ReLU(), L(6, 2)], 2.0),
    "conv_conv_maxpool": (24, lambda: [nn.Conv1d(4, 4, 5), nn.ReLU(), nn.Conv1d(4, 4, 3), nn.ReLU(),
                                       nn.MaxPool1d(2), nn.Flatten(), L(36, 6), nn.ReLU(), L(6, 2)], 2.0),
    "conv_avgpool_dense": (20, lambda: [nn.Conv1d(4, 4, 5), nn.ReLU(), nn.AvgPool1d(3, stride=2), nn.Flatten(),
                                        L(28, 6), nn.ReLU(), L(6, 2)], 2.0),
    "prelu_shared": (10, lambda: chain([40, 8, 6], nn.PReLU), 2.0),
    "prelu_per_channel_conv": (20, lambda: [nn.Conv1d(4, 4, 5), nn.PReLU(4), nn.MaxPool1d(2), nn.Flatten(),
                                            L(32, 6), nn.PReLU(6), L(6, 2)], 2.0),
    "sigmoid_chain": (10, lambda: chain([40, 8, 6], nn.Sigmoid), 3.0),
    "tanh_chain": (10, lambda: chain([40, 8, 6], nn.Tanh), 3.0),
    "conv_tanh_avgpool_sigmoid": (20, lambda: [nn.Conv1d(4, 4, 5), nn.Tanh(), nn.AvgPool1d(2), nn.Flatten(),
                                               L(32, 6), nn.Sigmoid(), L(6, 2)], 3.0),
    "maxpool_then_relu": (20, lambda: [nn.Conv1d(4, 4, 5), nn.MaxPool1d(2), nn.ReLU(), nn.Flatten(),
                                       L(32, 6), nn.ReLU(), L(6, 2)], 2.0),
    "conv_stride3_flatten_relu": (22, lambda: [nn.Conv1d(4, 3, 4, stride=3), nn.Flatten(), nn.ReLU(),
                                               L(21, 6), nn.ReLU(), L(6, 2)], 2.0),
    "mixed_relu_tanh_sigmoid": (10, lambda: [nn.Flatten(), L(40, 8), nn.ReLU(), L(8, 6), nn.Tanh(), L(6, 6),
                                             nn.Sigmoid(), L(6, 2)], 2.0),
}
# Architectures where the two situations must occur (checked by test_the_issue_cases_occur)
CANCELLING_DEAD_UNITS = ("relu_chain_2", "relu_chain_3", "relu_chain_4", "conv_relu_maxpool_dense",
                         "conv_stride2_maxpool", "maxpool_overlapping", "maxpool_stride1", "conv_conv_maxpool",
                         "conv_avgpool_dense", "maxpool_then_relu", "conv_stride3_flatten_relu",
                         "mixed_relu_tanh_sigmoid")
REFERENCE_MAX_LARGER = ("conv_relu_maxpool_dense", "conv_stride2_maxpool", "maxpool_overlapping",
                        "maxpool_stride1", "conv_conv_maxpool")


@functools.lru_cache(maxsize=None)
def case_model(name: str, seed: int):
    """The architecture's modules with seeded random float64 weights, its exported program, and its data.

    Weights are N(0, gain²/fan_in), biases N(0, 0.3²), PReLU slopes U(0.05, 0.6). X: random one-hot (n, 4, L).
    References for the exact rule: random one-hot (n, r, 4, L) (about a quarter of the positions equal x's);
    for the gradient rule: one random base composition per reference, the same at every position (constant in
    every pooling window, where the gradient rule sums to delta).
    """
    length, make, gain = ARCHITECTURES[name]
    rng = np.random.default_rng([zlib.crc32(name.encode()), seed])
    layers = make()
    for module in layers:
        module.double()
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            fan_in = module.weight[0].numel()
            set_weights(module, rng.normal(0, gain / np.sqrt(fan_in), module.weight.shape),
                        rng.normal(0, 0.3, module.bias.shape))
        elif isinstance(module, nn.PReLU):
            set_weights(module, rng.uniform(0.05, 0.6, module.weight.shape))
    model = nn.Sequential(*layers).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    X = random_one_hot(N_SEQUENCES, length, seed=int(rng.integers(2**31)), dtype=F64).numpy()
    R_exact = random_one_hot(N_SEQUENCES * N_REFERENCES, length, seed=int(rng.integers(2**31)), dtype=F64)
    R_exact = R_exact.numpy().reshape(N_SEQUENCES, N_REFERENCES, 4, length)
    composition = rng.dirichlet(np.ones(4), size=(N_SEQUENCES, N_REFERENCES))
    R_constant = np.repeat(composition[..., None], length, axis=-1)
    return layers, export(model, torch.from_numpy(X)), X, {"exact": R_exact, "gradient": R_constant}


def case_target(seed: int) -> int:
    return seed % 2


@functools.lru_cache(maxsize=None)
def reference_scores(name: str, seed: int, mode: str, max_rule: str):
    layers, _, X, references = case_model(name, seed)
    return reference_deeplift(layers, X, references[max_rule], target=case_target(seed), mode=mode,
                              max_rule=max_rule)


CASES = [pytest.param(name, seed, mode, max_rule, id=f"{name}-seed{seed}-{mode}-{max_rule}")
         for name in ARCHITECTURES for seed in SEEDS for mode in MODES for max_rule in MAX_RULES]


@pytest.mark.parametrize("name,seed,mode,max_rule", CASES)
def test_reference_sums_to_delta(name, seed, mode, max_rule):
    """Σ contributions = f(x)[t] − mean_k f(ref_k)[t] in float64 (the gradient rule with window-constant
    references, where it must hold)."""
    layers, _, X, references = case_model(name, seed)
    R = references[max_rule]
    contributions, _ = reference_scores(name, seed, mode, max_rule)
    model = nn.Sequential(*layers)
    with torch.no_grad():
        out_x = model(torch.from_numpy(X))[:, case_target(seed)].numpy()
        out_r = model(torch.from_numpy(R.reshape(-1, *R.shape[2:]))).reshape(*R.shape[:2], -1)
    delta = out_x - out_r[..., case_target(seed)].numpy().mean(axis=1)
    np.testing.assert_allclose(contributions.sum(axis=(1, 2)), delta, rtol=0, atol=CONSERVATION)


@pytest.mark.parametrize("name,seed,mode,max_rule", CASES)
def test_dnalift_agrees_with_reference(name, seed, mode, max_rule):
    """dnalift's contributions and hypothetical scores within 1e-9 of the reference's (relative to its largest
    |value|)."""
    _, program, X, references = case_model(name, seed)
    expected_contributions, expected_hypothetical = reference_scores(name, seed, mode, max_rule)
    contributions, hypothetical = dnalift_scores(program, X, references[max_rule], target=case_target(seed),
                                                 mode=mode, max_rule=max_rule)
    errors = {"contributions": relative_error(contributions, expected_contributions),
              "hypothetical": relative_error(hypothetical, expected_hypothetical)}
    assert max(errors.values()) <= AGREEMENT, f"relative errors {errors}"


# ---------------------------------------------------------------------------------------------------------------
# The situations of issue 9 occur in the cases above (else the agreement tests could not see them)


def next_nonlinearity_rule(traces, index: int):
    """The rule of the first nonlinearity after ``traces[index]`` (through pools and flatten), if any."""
    for trace in traces[index + 1:]:
        if isinstance(trace.layer, Elementwise):
            return trace.rule
        if isinstance(trace.layer, (Dense, Conv)):
            return None
    return None


def cancelling_dead_units(traces) -> int:
    """Inputs of a Linear/Conv1d layer whose forward difference is exactly 0 while their carried parts are not
    (a ReLU dead at x and x⁰ whose RevealCancel parts cancel), where a RevealCancel nonlinearity follows that
    layer, so that its m⁺ ≠ m⁻ and the Δ = 0 rule ½(m⁺ + m⁻) matters (issue 9, cause 1)."""
    count = 0
    for index in range(1, len(traces)):
        trace = traces[index]
        if isinstance(trace.layer, (Dense, Conv)) and next_nonlinearity_rule(traces, index) == "revealcancel":
            unchanged = trace.inp - trace.inp0 == 0
            count += int((unchanged & (traces[index - 1].pos != 0)).sum())
    return count


def reference_max_larger_at_unchanged_argmax(traces) -> int:
    """Max-pool windows where the reference's maximum is larger (y⁰ > y) and the input's argmax did not change
    (Δx[i*] == 0), where the exact rule's coefficient at i* is the gradient 1 (issue 9, cause 2)."""
    return sum(1 for trace in traces if isinstance(trace.layer, Pool) and trace.layer.kind == "max"
               for (_, _, _, _, y, y0, dx_at_i) in trace.windows if y0 > y and dx_at_i == 0)


def case_traces(name: str, mode: str, max_rule: str):
    """The reference's traces of every (sequence, reference) pair of every seed of one architecture."""
    for seed in SEEDS:
        layers, _, X, references = case_model(name, seed)
        for i in range(N_SEQUENCES):
            for k in range(N_REFERENCES):
                yield deeplift_pair(layers, X[i], references[max_rule][i, k], target=case_target(seed), mode=mode,
                                    max_rule=max_rule).traces


@pytest.mark.parametrize("name", CANCELLING_DEAD_UNITS)
def test_cancelling_dead_units_occur(name):
    assert sum(cancelling_dead_units(traces) for traces in case_traces(name, "revealcancel", "exact")) > 0


@pytest.mark.parametrize("name", ["relu_chain_2", "relu_chain_3", "relu_chain_4", "mixed_relu_tanh_sigmoid"])
def test_cancelling_dead_units_occur_in_genomics_mode(name):
    assert sum(cancelling_dead_units(traces) for traces in case_traces(name, "genomics", "exact")) > 0


@pytest.mark.parametrize("name", REFERENCE_MAX_LARGER)
def test_reference_max_larger_at_unchanged_argmax_occurs(name):
    assert sum(reference_max_larger_at_unchanged_argmax(traces)
               for traces in case_traces(name, "rescale", "exact")) > 0


MAX_POOLED = [name for name, (_, make, _) in ARCHITECTURES.items() if any(isinstance(m, nn.MaxPool1d) for m in make())]


@pytest.mark.parametrize("name", MAX_POOLED)
def test_gradient_rule_references_are_constant_in_each_window(name):
    """The gradient rule sums to delta only there; its agreement cases use such references."""
    for traces in case_traces(name, "rescale", "gradient"):
        for trace in traces:
            if isinstance(trace.layer, Pool) and trace.layer.kind == "max":
                for w in range(trace.routes.shape[1]):
                    start = w * trace.layer.stride
                    window = trace.inp0[:, start:start + trace.layer.kernel]
                    np.testing.assert_allclose(window, window[:, :1].repeat(window.shape[1], axis=1), atol=1e-12)
