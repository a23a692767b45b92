"""Model definitions shared by the benchmarks (randomly initialised; only speed and agreement are measured).

``paper_cnn``
    The genomics CNN of the DeepLIFT paper (section 3.2): Conv1d(4, 20, 15) -> PReLU -> MaxPool1d(50, stride
    50) -> Flatten -> Linear(60, 200) -> PReLU -> Linear(200, 200) -> PReLU -> Linear(200, 1), length 200.
``paper_cnn_relu``
    The same with ReLU in place of PReLU, for tools that have no PReLU rule (captum).
``chrombpnet``
    A ChromBPNet-sized profile model (chrombpnet's defaults: 512 filters, a first convolution of width 21, 8 dilated
    residual layers, dilations 2 ... 256, no padding, a profile head of width 75): 2,114 bp in, (profile (n, 1,
    1,000), counts (n, 1)) out; smaller with ``build("chrombpnet", filters=..., layers=..., out_length=...)``.
``bpnet_like``
    A BPNet-like dilated residual CNN: Conv1d(4, 64, 21, padding=10) -> ReLU -> 8 blocks
    ``x = x + ReLU(Conv1d(64, 64, 3, dilation=2**i, padding=2**i))`` -> mean over length -> Linear(64, 1),
    length 1000 (any length: ``build("bpnet", length=2114)``). Each block has its own ReLU module, so that
    hook-based tools see every ReLU call.

Every model returns shape (batch, 1).
"""

from __future__ import annotations

import torch
from torch import nn

PAPER_LENGTH = 200
BPNET_LENGTH = 1000


class PaperCNN(nn.Module):
    """The DeepLIFT paper's genomics CNN (PReLU, or ReLU with ``activation=nn.ReLU``)."""

    def __init__(self, activation=nn.PReLU):
        super().__init__()
        self.conv = nn.Conv1d(4, 20, 15)
        self.act1 = activation()
        self.pool = nn.MaxPool1d(50, stride=50)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(60, 200)
        self.act2 = activation()
        self.fc2 = nn.Linear(200, 200)
        self.act3 = activation()
        self.out = nn.Linear(200, 1)

    def forward(self, x):
        x = self.pool(self.act1(self.conv(x)))
        x = self.act2(self.fc1(self.flatten(x)))
        x = self.act3(self.fc2(x))
        return self.out(x)


class _Block(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.relu = nn.ReLU()

    def forward(self, x):
        return x + self.relu(self.conv(x))


class BPNetLike(nn.Module):
    """A BPNet-like dilated residual CNN with a scalar head (mean over length, then Linear)."""

    def __init__(self, channels: int = 64, n_blocks: int = 8):
        super().__init__()
        self.stem = nn.Conv1d(4, channels, 21, padding=10)
        self.relu = nn.ReLU()
        self.blocks = nn.ModuleList(_Block(channels, 2 ** i) for i in range(n_blocks))
        self.head = nn.Linear(channels, 1)

    def forward(self, x):
        x = self.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=-1))


class ChromBPNetLike(nn.Module):
    """A ChromBPNet-sized profile model (chrombpnet's defaults): Conv1d(4, F, 21) -> ReLU, then ``layers`` residual
    blocks ``x = crop(x) + ReLU(Conv1d(F, F, 3, dilation=2**i))`` (i = 1 ... layers, no padding: each block crops
    the residual to its output), a profile head Conv1d(F, 1, 75) -> (n, 1, out_length) and a counts head mean over
    length -> Linear(F, 1) -> (n, 1). Returns (profile, counts), as dnalift's ``counts``/``profile`` targets read."""

    def __init__(self, filters: int = 512, layers: int = 8):
        super().__init__()
        self.stem = nn.Conv1d(4, filters, 21)
        self.relu = nn.ReLU()
        self.convs = nn.ModuleList(nn.Conv1d(filters, filters, 3, dilation=2 ** i) for i in range(1, layers + 1))
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(layers))
        self.profile = nn.Conv1d(filters, 1, 75)
        self.counts = nn.Linear(filters, 1)

    @staticmethod
    def input_length(out_length: int, layers: int) -> int:
        """The input length that gives ``out_length`` profile positions (2,114 for 1,000 and 8 layers)."""
        return out_length + 20 + sum(2 * 2 ** i for i in range(1, layers + 1)) + 74

    def forward(self, x):
        x = self.relu(self.stem(x))
        for conv, relu in zip(self.convs, self.relus):
            y = relu(conv(x))
            crop = (x.shape[-1] - y.shape[-1]) // 2
            x = x[:, :, crop:x.shape[-1] - crop] + y
        return self.profile(x), self.counts(x.mean(dim=-1))


def _randomise_prelu(model: nn.Module, generator: torch.Generator) -> None:
    # PReLU starts at slope 0.25 everywhere; draw slopes so the benchmark does not depend on that default.
    for module in model.modules():
        if isinstance(module, nn.PReLU):
            with torch.no_grad():
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 0.3)


def build(name: str, *, seed: int = 0, length: int | None = None, filters: int = 512, layers: int = 8,
          out_length: int = 1000) -> tuple[nn.Module, int]:
    """A model in eval mode with frozen parameters, and its input length.

    Parameters
    ----------
    name : {"paper", "paper-relu", "bpnet", "chrombpnet"}
    seed : int
        Seed of the random initialisation.
    length : int, optional
        Input length of the BPNet-like model (default 1,000; it averages over length, so any length works).
        The paper CNNs take 200 only; the ChromBPNet-sized model's follows from its shape.
    filters, layers, out_length : int
        The ChromBPNet-sized model's shape (default chrombpnet's: 512, 8, 1,000 positions from 2,114 bp).

    Returns
    -------
    model : nn.Module
    length : int
    """
    if length is not None and name not in ("bpnet", "chrombpnet") and length != PAPER_LENGTH:
        raise ValueError(f"model {name!r} takes length {PAPER_LENGTH} only, not {length}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    if name == "paper":
        model, length = PaperCNN(nn.PReLU), PAPER_LENGTH
        _randomise_prelu(model, generator)
    elif name == "paper-relu":
        model, length = PaperCNN(nn.ReLU), PAPER_LENGTH
    elif name == "bpnet":
        model, length = BPNetLike(), length or BPNET_LENGTH
    elif name == "chrombpnet":
        model, length = ChromBPNetLike(filters, layers), ChromBPNetLike.input_length(out_length, layers)
    else:
        raise ValueError(f"unknown model {name!r}; choose paper, paper-relu, bpnet or chrombpnet")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, length


def export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """The model exported with a dynamic batch dimension (what dnalift's engine takes)."""
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(model.eval(), (example[:2],), dynamic_shapes=({0: batch},))


MODELS = ("paper", "paper-relu", "bpnet")
