"""Reproduce the genomics claim of the DeepLIFT paper (Shrikumar et al. 2016, section 3.2 and Figure 3) with dnalift.

The claim: on a CNN trained to call sequences that hold both a GATA site and a TAL1 E-box (CAGATG), DeepLIFT
gives both motifs large scores, while gradient x input misses the GATA motif.

What this script measures, on the correctly classified positives (label 1, logit > 0) of the demo's held-out
sequences (data/demo/test.fa, motif positions in data/demo/test_motifs.tsv):

* per-base scores of the observed base (the "projected" contribution: for DeepLIFT, the hypothetical score
  times the one-hot input summed over the four channels, which equals the contribution summed over channels)
  for several methods (``METHODS`` below);
* for each method and each motif kind (GATA1, TAL1), the auROC of "this base lies inside a site of that kind"
  against all other bases of the sequence, ranked by the score. It is computed per sequence and then averaged
  (mean, and the fraction of sequences above 0.5), and also pooled over all bases of all sequences.

Outputs: a Markdown table written between the markers ``<!-- reproduce_paper:table:begin -->`` and
``<!-- reproduce_paper:table:end -->`` of ``--markdown`` (the file is created with just the table if it does not
exist), a figure with one logo per method for one sequence (motif sites shaded), and optionally the numbers as
JSON. Usage (from the repository root, about a minute on 2 CPU cores)::

    python scripts/reproduce_paper.py                      # docs/reproduction.md, docs/figures/methods_logos.png
    python scripts/reproduce_paper.py --simulate 2000      # add 2,000 freshly simulated sequences (seed 2)
    python scripts/reproduce_paper.py --max-seqs 10 --n-refs 3 --json out.json --markdown out.md --figure f.png

Needs dnalift importable (``pip install -e .`` or ``PYTHONPATH=.``), numpy, torch, matplotlib and logomaker.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dnalift.attribution.engine import attribute  # noqa: E402
from dnalift.encoding import one_hot_encode  # noqa: E402
from dnalift.models import load_model  # noqa: E402
from dnalift.normalize.weights import normalize_first_layer  # noqa: E402
from dnalift.references.make import dinucleotide_shuffle, expected_frequency_references  # noqa: E402

MOTIFS = ("GATA1", "TAL1")
#: the fixed letters of each motif (the paper's 'GATA' and 'CAGATG'); the rest of a site is a degenerate flank
CORES = {"GATA1": "GATA", "TAL1": "CAGATG"}
#: what the auROC is computed for: every base of a site, or only its core letters
REGIONS = [(m, part) for part in ("site", "core") for m in MOTIFS]
BEGIN = "<!-- reproduce_paper:table:begin -->"
END = "<!-- reproduce_paper:table:end -->"
#: bases the paper's CNN reads at length 200 (conv width 15, pool 50 x 3 keeps conv positions 0..149)
VISIBLE = 164


@dataclass
class Method:
    key: str
    label: str
    reference: str
    run: object = field(repr=False)  # callable(data, n_refs, seed) -> (scores (n, L), max |delta| or None)


# ------------------------------------------------------------------------------------------------------- data
def read_fasta(path: Path) -> tuple[list[str], list[str], list[int]]:
    """Names, sequences and the ``label=`` of each header of a FASTA written by data/simulate.py."""
    sys.path.insert(0, str(ROOT / "data"))
    from simulate import read_fasta as read_simulated

    names, seqs, descriptions = read_simulated(str(path))
    labels = []
    for description in descriptions:
        label = [w.split("=", 1)[1] for w in description.split() if w.startswith("label=")]
        labels.append(int(label[0]) if label else -1)
    return names, seqs, labels


def read_sites(path: Path) -> dict[str, list[tuple[str, int, int, int, int]]]:
    """name -> [(motif, start, end, core_start, core_end)] from a motifs.tsv (0-based, half-open). The core is
    found in the sampled ``site`` string; on the minus strand the sequence holds the reverse complement."""
    sites: dict[str, list] = {}
    with open(path) as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            motif, start, end, site = row["motif"], int(row["start"]), int(row["end"]), row["site"]
            core = CORES[motif]
            offset = site.find(core)
            if offset < 0:
                raise SystemExit(f"{path}: site {site} of {row['name']} lacks the {motif} core {core}")
            if row["strand"] == "-":
                offset = len(site) - offset - len(core)
            sites.setdefault(row["name"], []).append(
                (motif, start, end, start + offset, start + offset + len(core)))
    return sites


def simulate(n: int, seed: int, workdir: Path) -> tuple[Path, Path]:
    """Fresh sequences from data/simulate.py (seed 2 by default: not the seed the model was trained on)."""
    out = workdir / f"sim_{n}_{seed}"
    subprocess.run([sys.executable, str(ROOT / "data" / "simulate.py"), "--n", str(n), "--seed", str(seed),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out / "sequences.fa", out / "motifs.tsv"


@dataclass
class Data:
    names: list[str]
    seqs: list[str]
    X: np.ndarray  # (n, 4, L) float32 one-hot
    masks: dict[tuple[str, str], np.ndarray]  # (motif, "site" | "core") -> (n, L) bool
    sites: list[list[tuple[str, int, int, int, int]]]
    logits: np.ndarray  # (n,)


# ------------------------------------------------------------------------------------------------- methods
def gradient_x_input(module):
    """Gradient x input with plain torch autograd on a module (no DeepLIFT rule in the loop)."""

    def run(data: Data, n_refs: int, seed: int):
        x = torch.as_tensor(data.X, dtype=torch.float32).requires_grad_(True)
        out = module(x).reshape(len(x), -1)[:, 0]
        (grad,) = torch.autograd.grad(out.sum(), x)
        return (grad * x).sum(dim=1).detach().numpy(), None

    return run


def deeplift(model, *, rule: str, reference: str, max_rule: str = "exact"):
    def run(data: Data, n_refs: int, seed: int):
        X = torch.as_tensor(data.X)
        if reference == "dinuc":
            refs = dinucleotide_shuffle(data.X, n=n_refs, seed=seed, names=data.names)
        else:
            refs = expected_frequency_references(data.X, method="uniform")
        res = attribute(model, X, torch.as_tensor(refs, dtype=torch.float32), target=0, rule=rule,
                        max_rule=max_rule, device="cpu", delta_tolerance=1e9)
        projected = (res.hypothetical * X).sum(dim=1)
        return projected.numpy(), float(res.deltas.abs().max())

    return run


def build_methods(model_path: Path, ts_path: Path) -> list[Method]:
    model = load_model(model_path, input_length=200)
    normalized = normalize_first_layer(model)
    return [
        Method("grad_x_input", "gradient x input", "none",
               gradient_x_input(torch.jit.load(str(ts_path), map_location="cpu").eval())),
        Method("grad_x_input_norm", "gradient x input, normalised weights", "none",
               gradient_x_input(normalized.program.module())),
        Method("rescale_dinuc", "DeepLIFT Rescale", "dinucleotide shuffles",
               deeplift(model, rule="rescale", reference="dinuc")),
        Method("rescale_uniform_norm", "DeepLIFT Rescale, normalised weights", "0.25 each base",
               deeplift(normalized, rule="rescale", reference="uniform")),
        Method("paper_2016", "DeepLIFT Rescale, normalised weights, gradient max rule (2016 setting)",
               "0.25 each base", deeplift(normalized, rule="rescale", reference="uniform", max_rule="gradient")),
        Method("revealcancel_dinuc", "DeepLIFT RevealCancel", "dinucleotide shuffles",
               deeplift(model, rule="revealcancel", reference="dinuc")),
        Method("genomics_dinuc", "DeepLIFT genomics mode (Rescale conv, RevealCancel dense)",
               "dinucleotide shuffles", deeplift(model, rule="genomics", reference="dinuc")),
    ]


# ------------------------------------------------------------------------------------------------- metrics
def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half
    (Mann-Whitney U from average ranks). NaN when one class is empty."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    stops = np.concatenate([boundaries, [len(scores)]])
    for a, b in zip(starts, stops):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # 1-based average of ranks a+1..b
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def evaluate(scores: np.ndarray, data: Data) -> dict:
    out = {}
    for motif, part in REGIONS:
        mask = data.masks[motif, part]
        per_seq = np.array([auroc(mask[i], scores[i]) for i in range(len(scores))])
        per_seq = per_seq[~np.isnan(per_seq)]
        out[f"{motif}_{part}"] = {
            "mean": float(per_seq.mean()),
            "sd": float(per_seq.std(ddof=1)) if len(per_seq) > 1 else 0.0,
            "median": float(np.median(per_seq)),
            "frac_above_half": float((per_seq > 0.5).mean()),
            "pooled": auroc(mask, scores),
            "n": int(len(per_seq)),
        }
    return out


def ablation(model, data: Data, *, draws: int = 10, seed: int = 0) -> dict:
    """Ground truth for what the model uses: the mean drop of the logit when the core letters of every site of
    one motif are replaced by uniformly random bases (``draws`` draws per sequence)."""
    module = model.program.module()
    rng = np.random.default_rng(seed)
    out = {}
    with torch.no_grad():
        base = module(torch.as_tensor(data.X)).reshape(len(data.X), -1)[:, 0].numpy()
        for motif in MOTIFS:
            mask = data.masks[motif, "core"]
            drops = []
            for _ in range(draws):
                X = data.X.copy()
                rows, cols = np.nonzero(mask)
                letters = rng.integers(0, 4, size=len(rows))
                X[rows, :, cols] = 0
                X[rows, letters, cols] = 1
                drops.append(base - module(torch.as_tensor(X)).reshape(len(X), -1)[:, 0].numpy())
            drops = np.mean(drops, axis=0)
            out[motif] = {"mean_drop": float(drops.mean()), "frac_positive": float((drops > 0).mean())}
    out["mean_logit"] = float(base.mean())
    return out


def gradient_diagnosis(state_path: Path, data: Data) -> dict | None:
    """Why gradient x input differs: the slopes of the trained PReLUs, and the gradient of the logit at the input
    with respect to the max-pooled convolution units whose window covers a site core (weighted by the units'
    activations), per motif. Needs the demo's architecture (data/paper_model.py) and its state_dict."""
    import importlib.util

    arch = ROOT / "data" / "paper_model.py"
    if not (arch.exists() and state_path.exists()):
        return None
    spec = importlib.util.spec_from_file_location("dnalift_demo_paper_model", arch)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    net = mod.PaperCNN()
    net.load_state_dict(torch.load(state_path, weights_only=True))
    net.eval()
    X = torch.as_tensor(data.X)
    h = net.act1(net.conv(X))
    pooled, where = torch.nn.functional.max_pool1d(h, net.pool.kernel_size, net.pool.stride, return_indices=True)
    pooled = pooled.detach().requires_grad_(True)
    logit = net.out(net.act3(net.fc2(net.act2(net.fc1(net.flatten(pooled))))))
    (grad,) = torch.autograd.grad(logit.sum(), pooled)
    width = net.conv.kernel_size[0]
    out = {"prelu_slopes": [float(a.weight.reshape(-1)[0]) for a in (net.act1, net.act2, net.act3)]}
    for motif in MOTIFS:
        num = den = 0.0
        for i, sites in enumerate(data.sites):
            for m, _, _, cs, ce in sites:
                if m != motif:
                    continue
                cover = (where[i] <= cs) & (where[i] + width >= ce)
                act = pooled[i].detach()[cover]
                num += float((act * grad[i][cover]).sum())
                den += float(act.sum())
        out[motif] = num / den if den else float("nan")
    return out


# ------------------------------------------------------------------------------------------------- outputs
def markdown_table(results: dict, meta: dict) -> str:
    cols = [("GATA1_site", "GATA site"), ("TAL1_site", "TAL1 site"), ("GATA1_core", "GATA core"),
            ("TAL1_core", "TAL1 core")]
    lines = [
        f"{meta['n_sequences']} correctly classified positives (of {meta['n_positives']} positives in "
        f"{' and '.join(meta['sources'])}); {meta['n_refs']} dinucleotide shuffles per sequence (seed {meta['seed']}). "
        f"Per-base score: the contribution of the observed base. auROC of the bases inside the motif's sites "
        f"(all 10 bases, or only the fixed core letters GATA / CAGATG) against all other bases of the same "
        f"sequence, **computed per sequence and then averaged** (mean ± sd, and in brackets the fraction of "
        f"sequences where it is above 0.5). Max abs Δ: the largest summation-to-delta error.",
        "",
        "| method | reference | " + " | ".join(c for _, c in cols) + " | max abs Δ |",
        "|---|---|" + "---|" * len(cols) + "---|",
    ]
    for r in results.values():
        cells = [f"{r['auroc'][k]['mean']:.3f} ± {r['auroc'][k]['sd']:.3f} ({r['auroc'][k]['frac_above_half']:.0%})"
                 for k, _ in cols]
        delta = "n/a" if r["max_abs_delta"] is None else f"{r['max_abs_delta']:.1e}"
        lines.append(f"| {r['label']} | {r['reference']} | " + " | ".join(cells) + f" | {delta} |")
    lines += ["", "The same auROCs **pooled** over all bases of all sequences:", "",
              "| method | " + " | ".join(c for _, c in cols) + " |", "|---|" + "---|" * len(cols)]
    for r in results.values():
        lines.append(f"| {r['label']} | " + " | ".join(f"{r['auroc'][k]['pooled']:.3f}" for k, _ in cols) + " |")
    ab = meta.get("ablation")
    if ab:
        lines += ["", f"What the model uses (in-silico mutagenesis): replacing the core letters of the GATA sites "
                  f"by random bases lowers the logit by {ab['GATA1']['mean_drop']:.2f} on average (it drops in "
                  f"{ab['GATA1']['frac_positive']:.0%} of the sequences), those of the TAL1 sites by "
                  f"{ab['TAL1']['mean_drop']:.2f} ({ab['TAL1']['frac_positive']:.0%}); mean logit "
                  f"{ab['mean_logit']:.2f}."]
    dg = meta.get("gradient_diagnosis")
    if dg:
        slopes = ", ".join(f"{a:.3f}" for a in dg["prelu_slopes"])
        lines += ["", f"Gradients at the input: the trained PReLU slopes are {slopes} (conv, dense 1, dense 2); "
                  f"the gradient of the logit with respect to the max-pooled convolution units whose window covers "
                  f"a site core, averaged with the units' activations as weights, is {dg['GATA1']:+.2f} for GATA "
                  f"and {dg['TAL1']:+.2f} for TAL1."]
    lines += ["", f"Made by `{meta['command']}` ({meta['seconds']:.0f} s on {meta['threads']} CPU threads, "
              f"torch {torch.__version__})."]
    return "\n".join(lines)


def write_markdown(path: Path, table: str) -> None:
    block = f"{BEGIN}\n{table}\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            path.write_text(head + block + tail)
            return
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def draw_figure(path: Path, scores: dict, results: dict, data: Data, index: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from dnalift.plotting import plot_logo
    except ImportError:  # pragma: no cover - the plotting module ships with dnalift
        plot_logo = None
    colours = {"GATA1": "#9ecae1", "TAL1": "#fdae6b"}
    keys = list(scores)
    L = data.X.shape[2]
    fig, axes = plt.subplots(len(keys), 1, figsize=(18, 1.9 * len(keys)), layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys):
        per_base = data.X[index] * scores[key][index][None, :]  # (4, L): the score on the observed base
        for motif, start, end, _, _ in data.sites[index]:
            ax.axvspan(start - 0.5, end - 0.5, color=colours[motif], alpha=0.45, lw=0, zorder=0)
        ax.axvspan(VISIBLE - 0.5, L - 0.5, color="0.9", lw=0, zorder=0)
        if plot_logo is not None:
            plot_logo(per_base, ax=ax)
        else:  # pragma: no cover
            import logomaker
            import pandas as pd

            logomaker.Logo(pd.DataFrame(per_base.T, columns=list("ACGT")), ax=ax)
        a = results[key]["auroc"]
        ga = auroc(data.masks["GATA1", "site"][index], scores[key][index])
        ta = auroc(data.masks["TAL1", "site"][index], scores[key][index])
        ax.set_title(f"{results[key]['label']} (reference: {results[key]['reference']}). Site auROC, this "
                     f"sequence: GATA {ga:.2f}, TAL1 {ta:.2f}; mean over all sequences: GATA "
                     f"{a['GATA1_site']['mean']:.2f}, TAL1 {a['TAL1_site']['mean']:.2f}", fontsize=9, loc="left")
        ax.set_xlim(-0.5, L - 0.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.45) for c in colours.values()]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.9"))
    fig.legend(handles, ["GATA site", "TAL1 site", "bases 164-199: never read by the model"], loc="outside upper right",
               ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"{data.names[index]} (logit {data.logits[index]:.2f}): per-base scores of the observed base",
                 x=0.01, ha="left", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------- main
def load_data(args, model_path: Path, workdir: Path) -> tuple[Data, dict]:
    sources = [(Path(args.fasta), Path(args.motifs))]
    if args.simulate:
        sources.append(simulate(args.simulate, args.simulate_seed, workdir))
    names, seqs, labels, sites = [], [], [], {}
    for fasta, tsv in sources:
        n, s, lab = read_fasta(fasta)
        names += n
        seqs += s
        labels += lab
        sites.update(read_sites(tsv))
    if len(set(names)) != len(names):
        raise SystemExit("duplicate sequence names across the inputs; simulate with another --simulate-seed")
    positives = [i for i, lab in enumerate(labels) if lab == 1]
    X = one_hot_encode([seqs[i] for i in positives], dtype=np.float32)
    model = load_model(model_path, input_length=X.shape[2])
    with torch.no_grad():
        logits = model.program.module()(torch.as_tensor(X)).reshape(len(X), -1)[:, 0].numpy()
    keep = [k for k in range(len(positives)) if logits[k] > 0]
    if args.max_seqs:
        keep = keep[: args.max_seqs]
    idx = [positives[k] for k in keep]
    L = X.shape[2]
    masks = {region: np.zeros((len(idx), L), dtype=bool) for region in REGIONS}
    seq_sites = []
    for row, i in enumerate(idx):
        seq_sites.append(sites.get(names[i], []))
        for motif, start, end, core_start, core_end in seq_sites[-1]:
            masks[motif, "site"][row, start:end] = True
            masks[motif, "core"][row, core_start:core_end] = True
    data = Data([names[i] for i in idx], [seqs[i] for i in idx], X[keep], masks, seq_sites, logits[keep])
    meta = {"n_positives": len(positives), "n_sequences": len(idx),
            "sources": [os.path.relpath(fasta, ROOT) if Path(fasta).resolve().is_relative_to(ROOT) else str(fasta)
                        for fasta, _ in sources[:1]]}
    if args.simulate:
        meta["sources"].append(f"{args.simulate} sequences simulated by data/simulate.py with seed {args.simulate_seed}")
    return data, meta


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "data/demo/model.pt2"), help="model for dnalift (default: demo .pt2)")
    p.add_argument("--torchscript", default=str(ROOT / "data/demo/model.pt"),
                   help="TorchScript of the same model, for gradient x input with plain torch autograd")
    p.add_argument("--state-dict", default=str(ROOT / "data/demo/model_state.pt"),
                   help="state_dict of the same model for data/paper_model.py (gradient diagnosis)")
    p.add_argument("--fasta", default=str(ROOT / "data/demo/test.fa"))
    p.add_argument("--motifs", default=str(ROOT / "data/demo/test_motifs.tsv"))
    p.add_argument("--simulate", type=int, default=0, help="also simulate this many sequences (data/simulate.py)")
    p.add_argument("--simulate-seed", type=int, default=2, help="seed for --simulate (the demo model saw seed 1)")
    p.add_argument("--n-refs", type=int, default=20, help="dinucleotide shuffles per sequence")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles")
    p.add_argument("--max-seqs", type=int, default=0, help="use at most this many sequences (0: all)")
    p.add_argument("--methods", default="", help="comma-separated method keys (default: all)")
    p.add_argument("--markdown", default=str(ROOT / "docs/reproduction.md"))
    p.add_argument("--figure", default=str(ROOT / "docs/figures/methods_logos.png"))
    p.add_argument("--figure-seq", default="", help="name of the sequence drawn (default: the first used)")
    p.add_argument("--json", default="", help="also write the numbers here")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data, meta = load_data(args, Path(args.model), Path(tmp))
    if not data.names:
        raise SystemExit("no correctly classified positives to score")
    methods = build_methods(Path(args.model), Path(args.torchscript))
    meta["ablation"] = ablation(load_model(Path(args.model), input_length=data.X.shape[2]), data)
    meta["gradient_diagnosis"] = gradient_diagnosis(Path(args.state_dict), data)
    if args.methods:
        wanted = args.methods.split(",")
        methods = [m for m in methods if m.key in wanted]
    scores, results = {}, {}
    for m in methods:
        t = time.perf_counter()
        s, delta = m.run(data, args.n_refs, args.seed)
        scores[m.key] = s
        results[m.key] = {"label": m.label, "reference": m.reference, "max_abs_delta": delta,
                          "auroc": evaluate(s, data), "seconds": round(time.perf_counter() - t, 2)}
        a = results[m.key]["auroc"]
        print(f"{m.key:22s} GATA {a['GATA1_site']['mean']:.3f} TAL1 {a['TAL1_site']['mean']:.3f} "
              f"({results[m.key]['seconds']:.1f} s)", file=sys.stderr)

    shown = [a for a in sys.argv[1:]] if argv is None else list(argv)
    meta.update(n_refs=args.n_refs, seed=args.seed, seconds=time.perf_counter() - t0,
                threads=torch.get_num_threads(),
                command="python scripts/reproduce_paper.py" + "".join(f" {a}" for a in shown
                                                                      if not a.startswith(str(ROOT))))
    table = markdown_table(results, meta)
    print(table)
    if args.markdown:
        write_markdown(Path(args.markdown), table)
    if args.figure:
        index = data.names.index(args.figure_seq) if args.figure_seq else 0
        draw_figure(Path(args.figure), scores, results, data, index)
    out = {"meta": meta, "methods": results, "sequences": data.names}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
