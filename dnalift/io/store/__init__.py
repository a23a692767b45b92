"""The dnalift result file: an HDF5 file of DeepLIFT scores, written as the run goes.

The format is described in :mod:`dnalift.io.store.schema` (every dataset and attribute name is defined
there and only there); :mod:`~dnalift.io.store.writer` streams a file to disk (:class:`ResultWriter`),
:mod:`~dnalift.io.store.reader` reads it lazily (:func:`open_results`), :mod:`~dnalift.io.store.validate`
lists its problems (:func:`validate_results`), :mod:`~dnalift.io.store.merge` joins shards
(:func:`merge_results`), :mod:`~dnalift.io.store.average` averages the folds of one scoring
(:func:`average_results`) and :mod:`~dnalift.io.store.lock` keeps two runs off one output.
"""

from __future__ import annotations

from dnalift.io.store.average import average_results, average_target_files
from dnalift.io.store.lock import OutputLock
from dnalift.io.store.merge import merge_results
from dnalift.io.store.reader import ResultReader, open_results
from dnalift.io.store.schema import (FORMAT_VERSION, default_chunk_size, lock_path, parse_shard, partial_path,
                                     shard_attrs)
from dnalift.io.store.validate import validate_results
from dnalift.io.store.writer import ResultWriter

__all__ = ["FORMAT_VERSION", "ResultWriter", "ResultReader", "OutputLock", "open_results", "validate_results",
           "merge_results", "average_results", "average_target_files",
           "shard_attrs", "parse_shard", "partial_path", "lock_path", "default_chunk_size"]
