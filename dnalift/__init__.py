"""dnalift: DeepLIFT contribution scores for PyTorch genomics models.

The public API::

    model = dnalift.load_model("model.pt", input_length=200)
    model = dnalift.program_for_module(net, (4, 200))      # an nn.Module, exported once (cached)
    X = dnalift.one_hot_encode(["ACGT..."])                 # (n, 4, length)
    R = dnalift.dinucleotide_shuffle(X, n=20, seed=0)       # (n, 20, 4, length)
    result = dnalift.attribute(model, X, R, target=0, rule="rescale")
    result.contributions, result.hypothetical, result.deltas
"""

from __future__ import annotations

__version__ = "0.1.0"

from dnalift.errors import *  # noqa: F401,F403
from dnalift.errors import __all__ as _error_names


def __getattr__(name):  # lazy imports keep `import dnalift` (and the CLI's start-up) cheap
    import importlib

    lazy = {
        "attribute": "dnalift.attribution.engine",
        "Attribution": "dnalift.attribution.engine",
        "load_model": "dnalift.models",
        "LoadedModel": "dnalift.models",
        "from_module": "dnalift.models.export",
        "from_program": "dnalift.models.export",
        "program_for_module": "dnalift.models.export",
        "normalize_first_layer": "dnalift.normalize.weights",
        "one_hot_encode": "dnalift.encoding",
        "one_hot_decode": "dnalift.encoding",
        "reverse_complement": "dnalift.encoding",
        "dinucleotide_shuffle": "dnalift.references.make",
        "expected_frequency_references": "dnalift.references.make",
        "zero_references": "dnalift.references.make",
        "references_from_fasta": "dnalift.references.make",
        "reverse_complement_sequence": "dnalift.encoding",
        "open_fasta": "dnalift.io.fasta",
        "open_regions": "dnalift.io.regions",
        "describe": "dnalift.attribution.engine",
        "open_results": "dnalift.io.store",
    }
    if name in lazy:
        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'dnalift' has no attribute {name!r}")


__all__ = ["__version__", *_error_names, "attribute", "Attribution", "load_model", "LoadedModel",
           "from_module", "from_program", "program_for_module", "normalize_first_layer", "one_hot_encode", "one_hot_decode", "reverse_complement",
           "dinucleotide_shuffle", "expected_frequency_references", "zero_references", "references_from_fasta",
           "reverse_complement_sequence", "open_fasta", "open_regions", "describe", "open_results"]
