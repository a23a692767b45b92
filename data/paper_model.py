"""The CNN of the DeepLIFT paper's genomics example (Shrikumar et al. 2016, section 3.2), in PyTorch.

Conv1d(4, 20, 15) -> PReLU -> MaxPool1d(50, stride 50) -> Flatten -> Linear(60, 200) -> PReLU
-> Linear(200, 200) -> PReLU -> Linear(200, 1), one logit (sigmoid gives P(positive)).

Shapes for a 200 bp input (n, 4, 200), channels A, C, G, T:
the convolution gives 200 - 15 + 1 = 186 positions; the pool keeps floor((186 - 50) / 50) + 1 = 3 windows
(positions 0-49, 50-99, 100-149; positions 150-185, which read bases 150-199, are dropped, so bases 164-199
are never seen); 20 channels x 3 = 60 features, flattened channel-major.

This file is imported by data/train.py as a plain module (``sys.path`` gets data/); it must stay the same
architecture as tests/toy_models.py:PaperCNN.
"""

from __future__ import annotations

import torch
from torch import nn


class PaperCNN(nn.Module):
    """The paper's genomics CNN; ``input_length`` 200 gives the 60 pooled features of the paper."""

    def __init__(self, input_length: int = 200, n_filters: int = 20, filter_width: int = 15,
                 pool: int = 50, hidden: int = 200):
        super().__init__()
        n_pooled = (input_length - filter_width + 1 - pool) // pool + 1
        if n_pooled < 1:
            raise ValueError(f"input_length {input_length} is too short for filters of {filter_width} "
                             f"and a pool of {pool}")
        self.conv = nn.Conv1d(4, n_filters, filter_width)
        self.act1 = nn.PReLU()
        self.pool = nn.MaxPool1d(pool, stride=pool)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(n_filters * n_pooled, hidden)
        self.act2 = nn.PReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.act3 = nn.PReLU()
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map one-hot DNA of shape (n, 4, input_length) to logits of shape (n, 1)."""
        h = self.pool(self.act1(self.conv(x)))
        h = self.act2(self.fc1(self.flatten(h)))
        h = self.act3(self.fc2(h))
        return self.out(h)
