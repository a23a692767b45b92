"""Print the window to give `modisco motifs -w` for an npz written by `dnalift export --format modisco`:
the array's length (its last axis) rounded down to an even number, since modisco needs an even window.

    python npz_width.py scores.ohe.npz

Reads only the array header inside the archive, not the data.
"""

import sys
import zipfile

import numpy as np


def npz_length(path: str) -> int:
    with zipfile.ZipFile(path) as zf, zf.open("arr_0.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(member)
    return int(shape[-1])


if __name__ == "__main__":
    length = npz_length(sys.argv[1])
    print(length - length % 2)
