"""Pick the k sequences with the highest prediction from a dnalift result file (run by Snakemake's `script:`).

Writes a TSV with a header and one row per sequence, best first: ``rank index name prediction`` (rank from 1,
index = the row in the result file, as ``dnalift logo --index`` takes it). Reads only ``predictions`` and
``names`` with h5py. With several targets the first column of ``predictions`` is used (the workflow scores one).
"""

import sys

import h5py
import numpy as np


def top_sequences(h5_path: str, k: int) -> list[tuple[int, int, str, float]]:
    with h5py.File(h5_path, "r") as f:
        predictions = np.asarray(f["predictions"][:], dtype=np.float64)
        if predictions.ndim > 1:
            predictions = predictions.reshape(len(predictions), -1)[:, 0]
        order = np.argsort(-predictions, kind="stable")[:k]
        names = f["names"].asstr()[:] if len(order) else []
        return [(rank, int(i), str(names[i]), float(predictions[i])) for rank, i in enumerate(order, start=1)]


def write_table(rows, path: str) -> None:
    with open(path, "w") as fh:
        fh.write("rank\tindex\tname\tprediction\n")
        for rank, index, name, prediction in rows:
            fh.write(f"{rank}\t{index}\t{name}\t{prediction:.6g}\n")


if __name__ == "__main__" and "snakemake" not in globals():  # python top_sequences.py scores.h5 K out.tsv
    write_table(top_sequences(sys.argv[1], int(sys.argv[2])), sys.argv[3])
elif "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:  # noqa: F821 (defined by Snakemake)
        rows = top_sequences(snakemake.input[0], int(snakemake.params.top_k))  # noqa: F821
        write_table(rows, snakemake.output.table)  # noqa: F821
        log.write(f"{len(rows)} sequences selected\n")
