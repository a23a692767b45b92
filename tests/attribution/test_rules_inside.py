"""Rules inside the network (issue 12): products of two activations, softmax, division, normalisation layers,
attention, and the bookkeeping ops that need no rule. Each rule is checked by hand on a small case and by
summation-to-delta (float64) in every mode on models that use it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import frozen, random_one_hot
from dnalift.attribution.engine import attribute
from dnalift.errors import UnsupportedOpError
from conftest import export

F64 = torch.float64
MODES = ("rescale", "revealcancel", "genomics")


def assert_sums_to_delta(result, tolerance=1e-8):
    change = result.predictions - result.reference_predictions
    total = result.contributions.flatten(1).sum(1) if result.contributions.dim() > 1 else result.contributions
    assert torch.all((total - change).abs() <= tolerance * change.abs().clamp(min=1)), (total, change)


# ----------------------------------------------------------------------------------------- by hand
class MatrixProduct(nn.Module):
    """Input (n, 4, 2): channels 0-1 are the rows of A, channels 2-3 the rows of B; output (A @ B)[0, 0]."""

    def __init__(self, spelling: str):
        super().__init__()
        self.spelling = spelling

    def forward(self, x):
        a, b = x[:, :2, :], x[:, 2:, :]
        if self.spelling == "matmul":
            p = a @ b
        elif self.spelling == "bmm":
            p = torch.bmm(a, b)
        else:
            p = torch.einsum("nik,nkj->nij", a, b)
        return p[:, 0, 0].unsqueeze(1)


@pytest.mark.parametrize("spelling", ["matmul", "bmm", "einsum"])
def test_product_rule_on_a_2x2_matrix_product_by_hand(spelling):
    """A = [[1,2],[3,4]], B = [[5,6],[7,8]], A0 = [[0,1],[1,0]], B0 = I.

    d(AB)[0,0] = sum_k dA[0,k] Bmid[k,0] + Amid[0,k] dB[k,0] with Bmid = B0 + dB/2 = [[3,3],[3.5,4.5]] and
    Amid = A0 + dA/2 = [[0.5,1.5],[2,2]]: A[0,0] gets 3 * 1 = 3, A[0,1] 3.5 * 1 = 3.5, B[0,0] 0.5 * 4 = 2,
    B[1,0] 1.5 * 7 = 10.5; the rest 0; total 19 = 19 - 0.
    """
    x = torch.tensor([[[1, 2], [3, 4], [5, 6], [7, 8]]], dtype=F64)
    ref = torch.tensor([[[0, 1], [1, 0], [1, 0], [0, 1]]], dtype=F64)
    program = export(MatrixProduct(spelling), x.repeat(2, 1, 1))
    expected = torch.tensor([[[3, 3.5], [0, 0], [2, 0], [10.5, 0]]], dtype=F64)
    for mode in MODES:
        result = attribute(program, x, ref, rule=mode, dtype=F64)
        torch.testing.assert_close(result.contributions, expected)
        assert result.predictions.item() == 19 and result.reference_predictions.item() == 0


def test_division_of_two_activations_by_hand():
    """y = a / b as a * (1/b): a = 2, b = 4, a0 = b0 = 1. m(1/b) = (1/4 - 1) / 3 = -1/4; the product gives a the
    multiplier (1/4 + 1)/2 = 5/8 and 1/b the multiplier (2 + 1)/2 = 3/2, so a contributes 5/8 * 1 and b
    3/2 * (-1/4) * 3 = -9/8: total -1/2 = 2/4 - 1/1."""

    class Ratio(nn.Module):
        def forward(self, x):
            return (x[:, 0] / x[:, 1]).unsqueeze(1)

    x = torch.tensor([[2.0, 4.0]], dtype=F64)
    ref = torch.tensor([[1.0, 1.0]], dtype=F64)
    program = export(Ratio(), x.repeat(2, 1))
    for mode in MODES:
        result = attribute(program, x, ref, rule=mode, dtype=F64)
        torch.testing.assert_close(result.contributions, torch.tensor([[0.625, -1.125]], dtype=F64))


def test_softmax_inside_the_network_by_hand():
    """y = softmax(z)[0] for z = (1, 0) against z0 = (0, 0): exp, sum, 1/s and the product rule give z_0 the
    contribution (e - 1) / (2 (e + 1)) = softmax(z)[0] - 1/2 and z_1 (no change) 0, whatever shift c the rule
    takes (it cancels from every multiplier)."""

    class Soft(nn.Module):
        def forward(self, z):
            return torch.softmax(z, dim=-1)[:, :1] * 1.0

    z = torch.tensor([[1.0, 0.0]], dtype=F64)
    ref = torch.zeros(1, 2, dtype=F64)
    program = export(Soft(), z.repeat(2, 1))
    e = math.e
    for mode in MODES:
        result = attribute(program, z, ref, rule=mode, dtype=F64)
        torch.testing.assert_close(result.contributions, torch.tensor([[(e - 1) / (2 * (e + 1)), 0.0]], dtype=F64))
    # shifted logits (a constant added to both) give the same scores: the rule's shift c cancels
    shifted = attribute(program, z + 50, ref + 50, dtype=F64)
    torch.testing.assert_close(shifted.contributions, result.contributions)


def test_layer_norm_on_a_3_vector_by_hand():
    """LayerNorm(3, eps=0, no affine), target y[2], x = (1, 2, 6), x0 = (1, 1, 4).

    Chain: c = x - mean(x) (linear): c = (-2, -1, 3), c0 = (-1, -1, 2); v = mean(c^2): Rescale of the square
    has multiplier c + c0, so dv = sum_j (c_j + c0_j) dc_j / 3 = 8/3 (= 14/3 - 2); r = v^-1/2 with Rescale
    multiplier m_r = (r - r0) / dv; y = c * r with the product rule: m_c2 = (r + r0)/2, m_r = (c2 + c02)/2.
    So dy2/dc_j = [j = 2] (r + r0)/2 + (c2 + c02)/2 * m_r * (c_j + c0_j)/3, and through the centring
    dy2/dx_i = sum_j dy2/dc_j (delta_ij - 1/3); contributions are those times dx = (0, 1, 2).
    """

    class Norm(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(3, eps=0.0, elementwise_affine=False)

        def forward(self, x):
            return self.norm(x)[:, 2:3]

    x = torch.tensor([[1.0, 2.0, 6.0]], dtype=F64)
    ref = torch.tensor([[1.0, 1.0, 4.0]], dtype=F64)
    c, c0 = np.array([-2.0, -1.0, 3.0]), np.array([-1.0, -1.0, 2.0])
    v, v0 = (c ** 2).mean(), (c0 ** 2).mean()
    r, r0 = v ** -0.5, v0 ** -0.5
    m_r = (r - r0) / (v - v0)
    dy_dc = np.array([0.0, 0.0, (r + r0) / 2]) + (c[2] + c0[2]) / 2 * m_r * (c + c0) / 3
    dy_dx = dy_dc @ (np.eye(3) - 1 / 3)
    expected = dy_dx * np.array([0.0, 1.0, 2.0])
    assert expected.sum() == pytest.approx(c[2] * r - c0[2] * r0, abs=1e-14)
    program = export(Norm(), x.repeat(2, 1))
    for mode in MODES:
        result = attribute(program, x, ref, rule=mode, dtype=F64)
        np.testing.assert_allclose(result.contributions[0].numpy(), expected, atol=1e-14)


# ------------------------------------------------------------------------------- summation to delta
class AttentionBlock(nn.Module):
    """Conv -> LayerNorm -> softmax self-attention (einsum and SDPA) -> gated MLP -> RMSNorm -> attention pooling
    (softmax over positions) -> GroupNorm branch -> dense."""

    def __init__(self, channels=8, heads=2):
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv1d(4, channels, 5, padding=2)
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.gate = nn.Linear(channels, 2 * channels)
        self.rms = nn.RMSNorm(channels)
        self.pool_logits = nn.Linear(channels, 1)
        self.group = nn.GroupNorm(2, channels)
        self.out = nn.Linear(2 * channels, 2)

    def forward(self, x):
        h = self.conv(x)                                    # (n, C, L)
        g = self.group(torch.relu(h)).mean(-1)              # (n, C)
        t = self.norm(h.transpose(1, 2))                    # (n, L, C)
        n, length, channels = t.shape
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        q, k, v = (z.reshape(n, length, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(q.shape[-1])
        attended = scores.softmax(-1) @ v + F.scaled_dot_product_attention(q, k, v)
        t = t + attended.transpose(1, 2).reshape(n, length, channels)
        a, b = self.gate(t).chunk(2, dim=-1)
        t = self.rms(t + a * torch.sigmoid(b))              # gated MLP (a product of two activations)
        weights = torch.softmax(self.pool_logits(t), dim=1)  # attention pooling over positions
        pooled = (t * weights).sum(1)
        return self.out(torch.cat([pooled, g / (1 + g.abs())], dim=-1))


@pytest.mark.parametrize("mode", MODES)
def test_attention_layer_norm_gated_mlp_sum_to_delta(mode, device):
    model = frozen(AttentionBlock, dtype=F64, seed=1)
    X = random_one_hot(3, 12, seed=2, dtype=F64)
    R = torch.stack([random_one_hot(4, 12, seed=10 + i, dtype=F64) for i in range(3)])
    program = export(model, X[:2])
    for target in (0, 1):
        result = attribute(program, X, R, target=target, rule=mode, dtype=F64, device=device)
        assert_sums_to_delta(result)
    # the output on the sequences is the model's
    with torch.no_grad():
        torch.testing.assert_close(result.predictions, model(X)[:, 1])


def test_sdpa_and_the_spelled_out_attention_get_the_same_scores():
    class Attend(nn.Module):
        def __init__(self, spelled):
            super().__init__()
            self.spelled = spelled
            self.proj = nn.Linear(4, 12)

        def forward(self, x):
            q, k, v = self.proj(x.transpose(1, 2)).chunk(3, dim=-1)
            if self.spelled:
                a = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1) @ v
            else:
                a = F.scaled_dot_product_attention(q, k, v)
            return a.sum((1, 2)).unsqueeze(1)

    X = random_one_hot(2, 10, seed=3, dtype=F64)
    R = torch.stack([random_one_hot(3, 10, seed=20 + i, dtype=F64) for i in range(2)])
    scores = []
    for spelled in (False, True):
        torch.manual_seed(0)
        model = Attend(spelled).double().eval()
        scores.append(attribute(export(model, X), X, R, dtype=F64, rule="revealcancel"))
    torch.testing.assert_close(scores[0].contributions, scores[1].contributions, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scores[0].hypothetical, scores[1].hypothetical, rtol=1e-10, atol=1e-12)


def test_small_enformer_sums_to_delta_in_every_mode():
    enformer_pytorch = pytest.importorskip("enformer_pytorch")
    torch.manual_seed(0)
    model = enformer_pytorch.Enformer.from_hparams(dim=48, depth=1, heads=2, output_heads={"human": 3},
                                                   target_length=4, num_downsamples=3, dim_divisible_by=8,
                                                   attn_dim_key=8).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    X = random_one_hot(2, 128, seed=4, layout="NLC", dtype=F64)        # enformer takes (n, length, 4)
    R = torch.stack([random_one_hot(2, 128, seed=30 + i, layout="NLC", dtype=F64) for i in range(2)])
    program = export(model, X)
    for mode in MODES:
        result = attribute(program, X, R, target="human:5", rule=mode, dtype=F64)
        assert_sums_to_delta(result)
    with torch.no_grad():
        torch.testing.assert_close(result.predictions, model(X)["human"].reshape(2, -1)[:, 5])


# ------------------------------------------------------------------------------------------ bookkeeping
def test_value_preserving_casts_and_metadata_checks_pass_and_keep_float64():
    class Casts(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 3, 3)

        def forward(self, x):
            h = self.conv(x.to(torch.float32))        # aten.to + _assert_tensor_metadata in the graph
            return torch.relu(h).to(torch.float32).clone().mean(-1)

    model = frozen(Casts)
    X = random_one_hot(2, 9, seed=5)
    program = export(model, X)
    ops = {n.target.__name__.split(".")[0] for n in program.graph.nodes if n.op == "call_function"}
    assert {"_assert_tensor_metadata", "to"} <= ops
    R = random_one_hot(3, 9, seed=6).unsqueeze(0).repeat(2, 1, 1, 1)
    result = attribute(program, X.double(), R.double(), dtype=F64)
    assert_sums_to_delta(result, 1e-12)                 # the float32 casts did not round the float64 run


def test_detach_of_an_input_dependent_value_is_refused_with_the_reason():
    class Detached(nn.Module):
        def forward(self, x):
            w = torch.softmax(x.sum(1), -1).detach()
            return (x.sum(1) * w).sum(-1, keepdim=True)

    program = export(Detached(), random_one_hot(2, 6))
    with pytest.raises(UnsupportedOpError, match="detach of a value that depends on the input") as info:
        attribute(program, random_one_hot(1, 6), random_one_hot(1, 6))
    assert [op.op for op in info.value.ops] == ["detach"]


def test_allow_gradient_says_when_a_name_does_not_occur_or_needs_no_fallback(caplog):
    model = nn.Sequential(nn.Conv1d(4, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)).eval()
    X = random_one_hot(2, 6)
    with caplog.at_level("WARNING"):
        attribute(export(model, X), X, X[:1], allow_gradient=("layer_norm", "relu"))
    text = caplog.text
    assert "aten.layer_norm does not occur" in text and "aten.relu has a DeepLIFT rule" in text
