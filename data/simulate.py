"""Simulate the genomics data set of the DeepLIFT paper (Shrikumar et al. 2016, section 3.2).

Every sequence is ``length`` bases (200 by default) drawn uniformly from A, C, G, T (0.25 each). Motif
instances are then written over the background:

* positives (label 1) carry one GATA1-like site AND one TAL1 E-box site;
* negatives (label 0) carry only one of the two kinds (50/50 which), once or twice (50/50 how often).

Each site is sampled column by column from the motif's position weight matrix (``PWMS`` below), placed at a
uniformly random start and on a random strand: a minus-strand site is written as the reverse complement of
the sampled string. Sites never overlap each other.

Where sites may go: the paper's network (20 filters of width 15, max pool of width and stride 50) turns a
200 bp input into 186 convolution positions and pools only the first 3 x 50 = 150 of them, so it never
sees bases 164-199 (convolution position 149 reads bases 149..163). A site placed there cannot be
detected, and DeepLIFT rightly gives it no score. By default sites therefore lie inside the window the
model can read, ``--region 0 164``; pass ``--region 0 200`` to place them anywhere.

Each sequence is drawn from its own generator, ``numpy.random.default_rng([seed, i])``, so sequence ``i``
depends only on the seed and its index: simulating 200 sequences gives the first 200 of a 20,000 set.

Outputs, in the directory given by ``--out``:

* ``sequences.fa``: FASTA, names ``sim_000000``... with ``label=0|1`` in the description;
* ``motifs.tsv``: one row per motif instance, columns ``name label motif start end strand site`` (0-based,
  half-open ``start``/``end``; ``strand`` ``+`` or ``-``; ``site`` is the string sampled from the PWM, read
  on its own strand, so the sequence holds ``site`` on ``+`` and its reverse complement on ``-``);
* ``pwms.json``: the position weight matrices (rows are positions, columns A, C, G, T).

Usage::

    python data/simulate.py --n 20000 --seed 1 --out build/demo_sim

Only numpy is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

ALPHABET = "ACGT"
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")

#: Position weight matrices, one row per position, probabilities of A, C, G, T. The cores are fixed
#: letters (the paper's patterns 'GATA' and 'CAGATG' always appear); the flanks are degenerate.
PWMS: dict[str, list[list[float]]] = {
    # GATA1-like, consensus "CAGATAAGAA" (last column nearly flat), ~ (C)(W)GATA(R)(G): the fixed GATA core
    # with a W before it and an R (mostly A) after.
    "GATA1": [
        [0.15, 0.55, 0.15, 0.15],  # C-ish flank
        [0.50, 0.02, 0.02, 0.46],  # W
        [0.00, 0.00, 1.00, 0.00],  # G
        [1.00, 0.00, 0.00, 0.00],  # A
        [0.00, 0.00, 0.00, 1.00],  # T
        [1.00, 0.00, 0.00, 0.00],  # A
        [0.80, 0.02, 0.16, 0.02],  # R, mostly A
        [0.15, 0.10, 0.65, 0.10],  # G-ish
        [0.45, 0.15, 0.20, 0.20],  # weak A
        [0.30, 0.20, 0.20, 0.30],  # weak W
    ],
    # TAL1 E-box, consensus "AACAGATGGT" (first column nearly flat): the fixed CAGATG core with degenerate
    # flanks.
    "TAL1": [
        [0.30, 0.20, 0.30, 0.20],  # weak
        [0.45, 0.20, 0.20, 0.15],  # A-ish
        [0.00, 1.00, 0.00, 0.00],  # C
        [1.00, 0.00, 0.00, 0.00],  # A
        [0.00, 0.00, 1.00, 0.00],  # G
        [1.00, 0.00, 0.00, 0.00],  # A
        [0.00, 0.00, 0.00, 1.00],  # T
        [0.00, 0.00, 1.00, 0.00],  # G
        [0.15, 0.15, 0.55, 0.15],  # G-ish
        [0.20, 0.20, 0.20, 0.40],  # weak T
    ],
}

#: The patterns that the paper names; each PWM's fixed core.
CORES = {"GATA1": "GATA", "TAL1": "CAGATG"}

#: Where sites go by default: the bases the paper's CNN reads at length 200 (see the module docstring).
DEFAULT_REGION = (0, 164)


@dataclass
class MotifSite:
    """One motif instance written into a sequence."""

    motif: str
    start: int  # 0-based
    end: int  # exclusive
    strand: str  # "+" or "-"
    site: str  # the sampled string, on its own strand


@dataclass
class SimulatedSequence:
    """One simulated sequence with its label and the motif instances it carries."""

    name: str
    sequence: str
    label: int
    motifs: list[MotifSite] = field(default_factory=list)


def reverse_complement(s: str) -> str:
    """Reverse complement of a DNA string (A, C, G, T, N)."""
    return s.translate(_COMPLEMENT)[::-1]


def consensus(pwm) -> str:
    """Most likely letter at each position of a PWM (rows are positions, columns A, C, G, T)."""
    return "".join(ALPHABET[int(i)] for i in np.argmax(np.asarray(pwm), axis=1))


def _check_pwm(name: str, pwm) -> np.ndarray:
    p = np.asarray(pwm, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 4 or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0):
        raise ValueError(f"PWM {name!r}: rows must be probabilities of A, C, G, T that sum to 1")
    return p


def sample_site(pwm, rng: np.random.Generator) -> str:
    """Draw one string from a PWM, one letter per row.

    Parameters
    ----------
    pwm : array-like, shape (width, 4)
        Probabilities of A, C, G, T at each position.
    rng : numpy.random.Generator
    """
    p = np.asarray(pwm, dtype=np.float64)
    cum = np.cumsum(p, axis=1)
    u = rng.random(p.shape[0])
    idx = np.minimum((u[:, None] >= cum).sum(axis=1), 3)
    return "".join(ALPHABET[int(i)] for i in idx)


def _place(width: int, occupied: list[tuple[int, int]], region: tuple[int, int],
           rng: np.random.Generator) -> int:
    lo, hi = region
    # Every start that keeps the site in the region and off the sites already placed.
    starts = [s for s in range(lo, hi - width + 1) if all(s + width <= a or s >= b for a, b in occupied)]
    if not starts:
        raise ValueError(f"no room for a motif of width {width} in region {region} beside {occupied}")
    return int(starts[rng.integers(len(starts))])


def simulate_one(index: int, *, seed: int, length: int = 200, region: tuple[int, int] = DEFAULT_REGION,
                 pwms: dict | None = None) -> SimulatedSequence:
    """Simulate sequence number ``index``; it depends only on ``seed`` and ``index``.

    Returns
    -------
    SimulatedSequence
        ``motifs`` sorted by start.
    """
    pwms = PWMS if pwms is None else pwms
    names = sorted(pwms)
    if len(names) != 2:
        raise ValueError("exactly two motifs are needed (positives carry both, negatives one kind)")
    rng = np.random.default_rng([seed, index])
    label = int(rng.random() < 0.5)
    if label == 1:
        to_place = list(names)
    else:
        kind = names[int(rng.integers(2))]
        to_place = [kind] * (1 + int(rng.integers(2)))
    letters = np.array(list(ALPHABET))[rng.integers(0, 4, size=length)]
    occupied: list[tuple[int, int]] = []
    sites = []
    for motif in to_place:
        pwm = pwms[motif]
        site = sample_site(pwm, rng)
        strand = "+" if rng.random() < 0.5 else "-"
        start = _place(len(site), occupied, region, rng)
        end = start + len(site)
        letters[start:end] = list(site if strand == "+" else reverse_complement(site))
        occupied.append((start, end))
        sites.append(MotifSite(motif, start, end, strand, site))
    sites.sort(key=lambda m: m.start)
    return SimulatedSequence(f"sim_{index:06d}", "".join(letters), label, sites)


def simulate(n: int, *, seed: int, length: int = 200, region: tuple[int, int] = DEFAULT_REGION,
             pwms: dict | None = None) -> list[SimulatedSequence]:
    """Simulate ``n`` sequences (see the module docstring for the model).

    Parameters
    ----------
    n : int
        Number of sequences.
    seed : int
        Sequence ``i`` is drawn from ``numpy.random.default_rng([seed, i])``.
    length : int
        Sequence length.
    region : (int, int)
        Sites lie within bases ``region[0]`` to ``region[1]`` (half-open).
    pwms : dict, optional
        Two PWMs by name (default :data:`PWMS`).
    """
    pwms = PWMS if pwms is None else pwms
    for name, pwm in pwms.items():
        _check_pwm(name, pwm)
    lo, hi = region
    if not 0 <= lo < hi <= length:
        raise ValueError(f"region {region} must lie within 0..{length}")
    if 2 * max(len(p) for p in pwms.values()) > hi - lo:
        raise ValueError(f"region {region} is too short for two motifs")
    return [simulate_one(i, seed=seed, length=length, region=region, pwms=pwms) for i in range(n)]


MOTIF_COLUMNS = ["name", "label", "motif", "start", "end", "strand", "site"]


def write_fasta(records, path: str, *, width: int = 80) -> None:
    """Write sequences as FASTA with ``label=`` in the description."""
    with open(path, "w") as fh:
        for r in records:
            fh.write(f">{r.name} label={r.label}\n")
            for i in range(0, len(r.sequence), width):
                fh.write(r.sequence[i:i + width] + "\n")


def write_motifs(records, path: str) -> None:
    """Write one TSV row per motif instance (columns :data:`MOTIF_COLUMNS`)."""
    with open(path, "w") as fh:
        fh.write("\t".join(MOTIF_COLUMNS) + "\n")
        for r in records:
            for m in r.motifs:
                fh.write(f"{r.name}\t{r.label}\t{m.motif}\t{m.start}\t{m.end}\t{m.strand}\t{m.site}\n")


def write_pwms(path: str, pwms: dict | None = None) -> None:
    """Write the PWMs as JSON: name -> alphabet, consensus, core, probabilities (width x 4)."""
    pwms = PWMS if pwms is None else pwms
    out = {
        name: {"alphabet": ALPHABET, "consensus": consensus(p), "core": CORES.get(name),
               "width": len(p), "probabilities": [list(map(float, row)) for row in p]}
        for name, p in pwms.items()
    }
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


def write_all(records, out_dir: str, *, pwms: dict | None = None, prefix: str = "") -> dict:
    """Write ``{prefix}sequences.fa``, ``{prefix}motifs.tsv`` and ``pwms.json`` into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"fasta": os.path.join(out_dir, f"{prefix}sequences.fa"),
             "motifs": os.path.join(out_dir, f"{prefix}motifs.tsv"),
             "pwms": os.path.join(out_dir, "pwms.json")}
    write_fasta(records, paths["fasta"])
    write_motifs(records, paths["motifs"])
    write_pwms(paths["pwms"], pwms)
    return paths


def read_fasta(path: str) -> tuple[list[str], list[str], list[str]]:
    """Read a FASTA file: (names, sequences, descriptions), sequences upper-cased."""
    names, seqs, descs, chunks = [], [], [], None
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if chunks is not None:
                    seqs.append("".join(chunks))
                head = line[1:].split(maxsplit=1)
                names.append(head[0])
                descs.append(head[1] if len(head) > 1 else "")
                chunks = []
            else:
                chunks.append(line.upper())
    if chunks is not None:
        seqs.append("".join(chunks))
    return names, seqs, descs


def read_motifs(path: str) -> list[dict]:
    """Read a motif TSV written by :func:`write_motifs` into a list of row dicts (ints converted)."""
    rows = []
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            for k in ("label", "start", "end"):
                row[k] = int(row[k])
            rows.append(row)
    return rows


def one_hot(seqs, dtype=np.float32) -> np.ndarray:
    """One-hot encode equal-length strings: shape (n, 4, length), channels A, C, G, T, other letters zero."""
    table = np.full(256, 4, dtype=np.int64)
    for i, c in enumerate(ALPHABET):
        table[ord(c)] = i
        table[ord(c.lower())] = i
    idx = table[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)].reshape(len(seqs), -1)
    out = np.zeros((len(seqs), 5, idx.shape[1]), dtype=dtype)
    np.put_along_axis(out, idx[:, None, :], 1, axis=1)
    return out[:, :4]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="number of sequences (default 20000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--length", type=int, default=200, help="sequence length (default 200)")
    ap.add_argument("--region", type=int, nargs=2, default=list(DEFAULT_REGION), metavar=("START", "END"),
                    help="sites lie within these bases, 0-based half-open (default 0 164: what the paper's "
                         "CNN reads at length 200)")
    ap.add_argument("--out", required=True, help="output directory (sequences.fa, motifs.tsv, pwms.json)")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    try:
        records = simulate(args.n, seed=args.seed, length=args.length, region=tuple(args.region))
    except ValueError as e:
        ap.error(str(e))
    paths = write_all(records, args.out)
    n_pos = sum(r.label for r in records)
    print(f"wrote {args.n} sequences ({n_pos} positive, {args.n - n_pos} negative): "
          f"{paths['fasta']}, {paths['motifs']}, {paths['pwms']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
