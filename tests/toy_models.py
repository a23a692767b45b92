"""Small toy models for the tests, importable as ``tests.toy_models:Name`` (e.g. as an ``arch`` for a state_dict).

Each model reads one-hot DNA. They are small so that exporting them takes a fraction of a second:

- :class:`PaperCNN`: the genomics CNN of the DeepLIFT paper (section 3.2), length 200, one target.
- :class:`PaddedCNN`: a zero-padded first convolution (``padding`` and ``dilation`` configurable), global
  average pooling, three targets; the edge outputs of its first layer see padded (all-zero) columns.
- :class:`ChannelsLastCNN`: takes ``(n, length, 4)`` and transposes it itself.
- :class:`LinearFirst`: flattens the one-hot input and starts with a dense layer.
- :class:`RevCompCNN`: one convolution applied to the input and to its reverse complement (shared weights).
- :class:`Conv2dFirst`: a Basset-style ``Conv2d`` with a ``(1, k)`` kernel on ``(n, 4, 1, length)``.
- :class:`GatedFirst`: the one-hot input is multiplied by itself before any layer (cannot be normalised).
- :class:`TupleOutput`, :class:`DictOutput`: models with several outputs.
- :class:`FiveChannel`: takes ``(n, 5, length)`` (A, C, G, T, N), which is no one-hot layout dnalift passes.
- :class:`MarkerModule`: a module whose unpickling creates a marker file (proves a file was not unpickled).
- :class:`FixedLength`: flatten -> dense, takes exactly 30 bases; :class:`NoRule`: uses ``erf`` (no rule).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "PaperCNN",
    "PaddedCNN",
    "ChannelsLastCNN",
    "LinearFirst",
    "RevCompCNN",
    "Conv2dFirst",
    "GatedFirst",
    "TupleOutput",
    "DictOutput",
    "FiveChannel",
    "MarkerModule",
]


class PaperCNN(nn.Module):
    """Conv1d(4, 20, 15) -> PReLU -> MaxPool1d(50, 50) -> Flatten -> Linear(60, 200) -> PReLU -> Linear(200, 200)
    -> PReLU -> Linear(200, 1), for input ``(n, 4, 200)`` (paper section 3.2, with PyTorch layers)."""

    def __init__(self, n_filters: int = 20, width: int = 15, hidden: int = 200):
        super().__init__()
        self.conv = nn.Conv1d(4, n_filters, width)
        self.act1 = nn.PReLU()
        self.pool = nn.MaxPool1d(50, 50)
        self.flatten = nn.Flatten()
        self.dense1 = nn.Linear(n_filters * ((200 - width + 1) // 50), hidden)
        self.act2 = nn.PReLU()
        self.dense2 = nn.Linear(hidden, hidden)
        self.act3 = nn.PReLU()
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.flatten(self.pool(self.act1(self.conv(x))))
        return self.out(self.act3(self.dense2(self.act2(self.dense1(h)))))


class PaddedCNN(nn.Module):
    """Zero-padded Conv1d(4, 6, kernel) -> ReLU -> Conv1d(6, 6, 3, padding=1) -> ReLU -> mean over length
    -> Linear(6, 3); any input length."""

    def __init__(self, kernel: int = 7, padding=3, dilation: int = 1, n_targets: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 6, kernel, padding=padding, dilation=dilation)
        self.conv2 = nn.Conv1d(6, 6, 3, padding=1)
        self.out = nn.Linear(6, n_targets)

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.out(h.mean(dim=-1))


class ChannelsLastCNN(nn.Module):
    """Takes ``(n, length, 4)``: transpose -> Conv1d(4, 5, 5) -> ReLU -> max over length -> Linear(5, 2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 5, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x.transpose(1, 2)))
        return self.out(h.amax(dim=-1))


class LinearFirst(nn.Module):
    """Flatten ``(n, 4, length)`` -> Linear(4 * length, 16) -> ReLU -> Linear(16, 1)."""

    def __init__(self, length: int = 20, hidden: int = 16):
        super().__init__()
        self.dense = nn.Linear(4 * length, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.out(torch.relu(self.dense(x.flatten(1))))


class RevCompCNN(nn.Module):
    """One zero-padded Conv1d applied to the input and to its reverse complement (flip of channels and
    positions), ReLU, summed, mean over length -> Linear(4, 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 5, padding=2)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x)) + torch.relu(self.conv(torch.flip(x, dims=(1, 2))))
        return self.out(h.mean(dim=-1))


class Conv2dFirst(nn.Module):
    """Basset style: ``(n, 4, length)`` -> unsqueeze to ``(n, 4, 1, length)`` -> Conv2d(4, 5, (1, 5),
    padding=(0, 2)) -> ReLU -> mean -> Linear(5, 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 5, (1, 5), padding=(0, 2))
        self.out = nn.Linear(5, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x.unsqueeze(2)))
        return self.out(h.mean(dim=(2, 3)))


class GatedFirst(nn.Module):
    """``x * x`` before the first convolution: the one-hot input reaches no conv/linear layer directly."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x * x)).mean(dim=-1))


class TupleOutput(nn.Module):
    """Returns a tuple of two tensors (profile and counts, BPNet style)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 2, 3, padding=1)

    def forward(self, x):
        h = self.conv(x)
        return h, h.sum(dim=-1)


class DictOutput(nn.Module):
    """Returns a dict of two tensors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 2, 3, padding=1)

    def forward(self, x):
        h = self.conv(x).mean(dim=-1)
        return {"enhancer": h[:, :1], "promoter": h[:, 1:]}


class FiveChannel(nn.Module):
    """Takes ``(n, 5, length)`` (a channel for N): neither per-row dimension is 4."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(5, 2, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=-1)


def _make_marker(path: str) -> nn.Module:
    """Called when a pickled :class:`MarkerModule` is unpickled: create ``path`` and return a tiny model."""
    with open(path, "w") as fh:
        fh.write("unpickled\n")
    return LinearFirst(length=3, hidden=2)


class MarkerModule(nn.Module):
    """A model whose unpickling runs code: it creates the file ``marker_path`` (and yields a
    ``LinearFirst(length=3, hidden=2)``). Used to prove that an untrusted pickle is never unpickled."""

    def __init__(self, marker_path: str):
        super().__init__()
        self.marker_path = os.fspath(marker_path)
        self.dense = nn.Linear(12, 2)

    def forward(self, x):
        return self.dense(x.flatten(1))

    def __reduce__(self):
        return (_make_marker, (self.marker_path,))


# ------------------------------------------------------------------------------------------------------------
# models of the export layer's tests (control inputs, crops, autocast, batch-size values)


class CroppedProfile(nn.Module):
    """BPNet-like and scriptable: Conv1d(4, 3, 5, padding=2) -> ReLU; a profile head cropped by ``trimming`` on
    each side (``y[:, :, t:x.shape[2] - t]``) and a count head reshaped to ``(x.shape[0], 1)``."""

    def __init__(self, trimming: int = 4):
        super().__init__()
        self.trimming = trimming
        self.conv = nn.Conv1d(4, 3, 5, padding=2)
        self.profile = nn.Conv1d(3, 2, 3, padding=1)
        self.count = nn.Linear(3, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        start, end = self.trimming, x.shape[2] - self.trimming
        y = self.profile(h)[:, :, start:end]
        return y, self.count(h.mean(dim=2)).reshape(x.shape[0], 1)


class BatchZeros(nn.Module):
    """Adds ``torch.zeros(x.shape[0], 1)`` (a value that depends only on the batch size) to a dense head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=-1)
        extra = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return self.out(torch.cat([h, extra], dim=1))


class WithControl(nn.Module):
    """``forward(x, x_ctl)``: a required control track ``(n, 2, length)`` concatenated to the one-hot input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(6, 3, 3, padding=1)
        self.out = nn.Linear(3, 1)

    def forward(self, x, x_ctl):
        return self.out(torch.relu(self.conv(torch.cat([x, x_ctl], dim=1))).mean(dim=-1))


class DisabledAutocast(nn.Module):
    """A head inside ``torch.autocast("cuda", enabled=False)`` with an ``x.float()`` in it, as borzoi-pytorch's."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=-1)
        with torch.autocast("cuda", enabled=False):
            y = self.out(h.float())
        return y.to(torch.float32)


class EnabledAutocast(DisabledAutocast):
    """The head inside an enabled ``torch.autocast("cpu", dtype=torch.bfloat16)``: it would compute in bfloat16."""

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.out(h)
        return y


__all__ += ["CroppedProfile", "BatchZeros", "WithControl", "DisabledAutocast", "EnabledAutocast"]


class FixedLength(nn.Module):
    """Flatten (n, 4, 30) -> Linear: takes sequences of exactly 30 bases."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(4 * 30, 1)

    def forward(self, x):
        return self.dense(x.flatten(1))


class NoRule(nn.Module):
    """Uses erf, which has no DeepLIFT rule."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(torch.erf(self.conv(x)).mean(dim=-1))


__all__ += ["FixedLength", "NoRule"]


class Kernel15(nn.Module):
    """A convolution of width 15 that runs on any length of at least 15 (scripted, not traced)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 15)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x)).mean(dim=-1))


class ConvMeanLinear(nn.Module):
    """Conv1d(4, channels, kernel, same padding) -> ReLU -> mean over length -> Linear(channels, outputs): the
    small model of the pipeline, CLI, devices, variants and kept-regions tests."""

    def __init__(self, channels: int, kernel: int, outputs: int):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, kernel, padding=kernel // 2)
        self.out = nn.Linear(channels, outputs)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x)).mean(dim=-1))


def conv_mean_linear(channels: int, kernel: int, outputs: int, *, seed: int, scale: float = 1.0) -> ConvMeanLinear:
    """A :class:`ConvMeanLinear` in eval mode, initialised under ``torch.manual_seed(seed)`` and its weights
    multiplied by ``scale`` (spread, so outputs differ between sequences)."""
    torch.manual_seed(seed)
    net = ConvMeanLinear(channels, kernel, outputs).eval()
    if scale != 1.0:
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
    return net
