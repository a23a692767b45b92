"""First-layer weight normalisation for one-hot input (2017 paper, section 2.6)."""

from dnalift.normalize.weights import normalize_first_layer

__all__ = ["normalize_first_layer"]
