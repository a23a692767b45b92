"""Reference inputs for DeepLIFT: dinucleotide shuffles, expected frequencies, zeros, or a FASTA; one factory."""

from dnalift.references.make import (FastaReferences, References, expected_frequency_references, file_sha256,
                                     make_references, references_from_fasta, zero_references)
from dnalift.references.shuffle import dinucleotide_shuffle

__all__ = ["dinucleotide_shuffle", "expected_frequency_references", "zero_references", "references_from_fasta",
           "FastaReferences", "References", "make_references", "file_sha256"]
