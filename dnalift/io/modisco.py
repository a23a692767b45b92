"""The TF-MoDISco input pair of a result file (the ``.npz`` files ``modisco motifs -s/-a`` reads).

TF-MoDISco lite can read a result file directly (``modisco motifs -i out.h5``: it reads ``shap/seq``
and ``raw/seq``, shape (n, 4, L), and transposes them itself). :func:`write_modisco_npz` writes the other
input it takes, the pair of ``.npz`` files for ``modisco motifs -s ohe.npz -a hyp.npz``: each holds one
array under the key ``arr_0`` (what ``np.savez_compressed(path, array)`` writes and what modisco reads),
shape (n, 4, L), float32. Modisco keeps the central ``-w`` positions of each sequence, from
``L//2 - w//2`` to ``L//2 + w//2``, so ``w`` must be even (an odd ``w`` gives ``w - 1`` positions and
modisco stops with an error) and at most ``L``; :func:`write_modisco_npz` crops the same way when asked.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dnalift.errors import DnaliftError
from dnalift.io.outputs import check_outputs_free
from dnalift.io.store import open_results

__all__ = ["ModiscoFiles", "write_modisco_npz", "modisco_command", "modisco_window"]

logger = logging.getLogger(__name__)

#: ``modisco motifs -n``: the README of TF-MoDISco lite uses 2000; raise it for large data sets
MODISCO_MAX_SEQLETS = 2000


class ModiscoFiles(NamedTuple):
    """What :func:`write_modisco_npz` wrote and how to run TF-MoDISco on it."""

    hypothetical: Path  #: ``<prefix>.hyp.npz``
    one_hot: Path  #: ``<prefix>.ohe.npz``
    command: str  #: ``modisco motifs -s ... -a ... -n 2000 -w W -o <prefix>.modisco.h5``


def modisco_window(length: int, window: int | None = None) -> int:
    """The ``-w`` to give modisco for sequences of ``length``: ``window`` after checking it, or the
    largest even number <= length."""
    if window is None:
        return int(length) - int(length) % 2
    window = int(window)
    if window < 2 or window % 2:
        raise DnaliftError(f"window {window} must be even and >= 2: TF-MoDISco's -w keeps the positions "
                           f"L//2 - w//2 to L//2 + w//2, so an odd window loses a position and modisco refuses it")
    if window > length:
        raise DnaliftError(f"window {window} is longer than the sequences ({length} bp); give a window <= {length}")
    return window


def _crop(length: int, window: int) -> slice:
    """Modisco's central window: [L//2 - w//2, L//2 + w//2)."""
    start = length // 2 - window // 2
    return slice(start, start + window)


def modisco_command(h5_path: str | os.PathLike | None = None, *, one_hot: str | os.PathLike | None = None,
                    hypothetical: str | os.PathLike | None = None, window: int, output: str | os.PathLike,
                    max_seqlets: int = MODISCO_MAX_SEQLETS) -> str:
    """The ``modisco motifs`` command line for a result file (``-i``) or an npz pair (``-s``/``-a``)."""
    q = lambda p: shlex.quote(os.fspath(p))  # noqa: E731
    inputs = f"-i {q(h5_path)}" if h5_path is not None else f"-s {q(one_hot)} -a {q(hypothetical)}"
    return f"modisco motifs {inputs} -n {int(max_seqlets)} -w {int(window)} -o {q(output)}"




def _write_npz_stream(path: Path, shape: tuple[int, ...], blocks) -> None:
    """Write what ``np.savez_compressed(path, a)`` writes for an array ``a`` of ``shape`` float32,
    from its row blocks, without holding the array: a deflated zip (zip64) with one member
    ``arr_0.npy`` (npy format 1.0, C order, little-endian float32)."""
    import zipfile

    tmp = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                             "shape": tuple(int(s) for s in shape)})
                for block in blocks:
                    member.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_modisco_npz(path: str | os.PathLike, prefix: str | os.PathLike, *, window: int | None = None,
                   force: bool = False) -> ModiscoFiles:
    """Write ``<prefix>.hyp.npz`` and ``<prefix>.ohe.npz`` for ``modisco motifs -s ... -a ...``.

    Parameters
    ----------
    path : result file
    prefix : str or path-like
        Output prefix; its directory is created if needed.
    window : int, optional
        Keep only the central ``window`` positions (even, <= L), exactly the positions ``modisco -w``
        keeps. Default: the whole sequence.
    force : bool
        Overwrite existing npz files.

    Returns
    -------
    ModiscoFiles
        ``(hypothetical, one_hot, command)``: each npz holds ``arr_0``, float32 (n, 4, W) with W the
        window or L; ``command`` is the ``modisco motifs`` line to run next (its ``-w`` is the window,
        or the largest even number <= L, so modisco uses every position it can).

    Notes
    -----
    The arrays are streamed chunk by chunk into the zip archives, so memory does not grow with n;
    the files are the same as ``np.savez_compressed(file, array)`` writes.
    """
    prefix = os.fspath(prefix)
    hyp_path, ohe_path = Path(prefix + ".hyp.npz"), Path(prefix + ".ohe.npz")
    check_outputs_free((hyp_path, ohe_path), force)
    hyp_path.parent.mkdir(parents=True, exist_ok=True)
    with open_results(path) as r:
        w = r.length if window is None else modisco_window(r.length, window)
        cols = _crop(r.length, w)
        shape = (r.n, 4, w)
        use = "TF-MoDISco cannot use the file"
        _write_npz_stream(hyp_path, shape, (r.refuse_nonfinite(a, b, use, r.hypothetical(slice(a, b))[:, :, cols])
                                            for a, b in r.iter_chunks()))
        _write_npz_stream(ohe_path, shape, (r.raw(slice(a, b))[:, :, cols] for a, b in r.iter_chunks()))
        n = r.n
    logger.info("wrote %s and %s (%d sequences x %d positions)", hyp_path, ohe_path, n, w)
    command = modisco_command(one_hot=ohe_path, hypothetical=hyp_path, window=modisco_window(w),
                              output=prefix + ".modisco.h5")
    return ModiscoFiles(hyp_path, ohe_path, command)
