"""From input multipliers to contributions and hypothetical contributions.

For a sequence ``x``, references ``ref_k`` and the multipliers ``m_k`` of the input against each reference:

* contributions: ``C = mean_k m_k * (x - ref_k)``; summed over everything they give the difference between
  the target on ``x`` and its mean on the references.
* hypothetical contributions (one-hot input): the contribution base ``b`` would have at position ``l`` if it
  were there, ``H[b, l] = mean_k sum_c m_k[c, l] * (e_b - ref_k)[c, l] = mean_k (m_k[b, l] - sum_c m_k[c, l]
  ref_k[c, l])``. On the observed base this equals the sum over channels of ``C`` at that position, so
  ``H * x`` (the "projected" scores) holds the contributions of the observed bases.

The functions return sums over the references of one batch; the engine divides by the number of references
once every batch of a sequence is in.
"""

from __future__ import annotations

import torch


def contribution_sum(multipliers: torch.Tensor, inputs: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """Sum over references of ``m * (x - ref)``.

    Parameters
    ----------
    multipliers : Tensor (n, r, *shape)
    inputs : Tensor (n, *shape)
    refs : Tensor (n, r, *shape)

    Returns
    -------
    Tensor (n, *shape)
    """
    return (multipliers * (inputs.unsqueeze(1) - refs)).sum(1)


def hypothetical_sum(multipliers: torch.Tensor, refs: torch.Tensor, *, channel_axis: int = 1) -> torch.Tensor:
    """Sum over references of ``m_b - sum_c m_c ref_c`` for each base ``b``.

    Parameters
    ----------
    multipliers, refs : Tensor (n, r, 4, length)
    channel_axis : int
        Axis of the 4 bases in an (n, ...) array: 1 for (n, 4, length), -1 for (n, length, 4).

    Returns
    -------
    Tensor (n, 4, length)
    """
    axis = channel_axis + 1 if channel_axis >= 0 else channel_axis
    return (multipliers - (multipliers * refs).sum(axis, keepdim=True)).sum(1)
