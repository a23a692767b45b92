"""Train the paper's genomics CNN (data/paper_model.py) on data simulated by data/simulate.py.

Reads ``sequences.fa`` and ``motifs.tsv`` from ``--sim``, splits them by position in the file (first 80%
train, next 10% validation, last 10% test), trains with Adam on BCEWithLogitsLoss, stops early when the
validation loss has not improved for ``--patience`` epochs and keeps the best epoch's weights. Seeded and
deterministic on the CPU (``torch.manual_seed``, ``torch.use_deterministic_algorithms``; the thread count
is fixed too, since summation order can change the last bits).

Writes into ``--out`` (data/demo by default):

* ``model_state.pt``: the state_dict (load with ``weights_only=True`` into ``PaperCNN()``);
* ``model.pt``: TorchScript, ``torch.jit.trace`` of the model in eval mode;
* ``model.pt2``: ``torch.export`` program with a dynamic batch dimension;
* ``test.fa``, ``test_motifs.tsv``: ``--n-demo`` held-out test sequences, positives and negatives
  alternating (a positive first), with their labels and motif positions, and ``pwms.json``;
* ``metrics.json``: auROC and accuracy on the whole test split and on the shipped sequences, the training
  time, the epochs, and the settings.

It then loads ``model.pt`` and ``model.pt2`` back and checks that they give the trained module's outputs.

Usage::

    python data/train.py --sim build/demo_sim --out data/demo --seed 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simulate  # noqa: E402
from paper_model import PaperCNN  # noqa: E402


def auroc(labels, scores) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties given their mean rank."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def load_simulation(sim_dir: str):
    """Return names, sequences, labels (int array) and motif rows grouped by sequence name."""
    names, seqs, _ = simulate.read_fasta(os.path.join(sim_dir, "sequences.fa"))
    rows = simulate.read_motifs(os.path.join(sim_dir, "motifs.tsv"))
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f"{sim_dir}/motifs.tsv: no rows for sequence {missing[0]!r}; re-run data/simulate.py")
    labels = np.array([by_name[n][0]["label"] for n in names], dtype=np.int64)
    return names, seqs, labels, by_name


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    return torch.cat([model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])[:, 0].numpy()


def train(X_tr, y_tr, X_va, y_va, *, seed, max_epochs, patience, batch_size, lr, log=print):
    """Train a PaperCNN with early stopping on the validation loss; returns (model, history)."""
    torch.manual_seed(seed)
    model = PaperCNN(input_length=X_tr.shape[2])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, history = float("inf"), None, 0, []
    for epoch in range(1, max_epochs + 1):
        model.train()
        perm = torch.randperm(len(X_tr), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(X_tr[idx])[:, 0], y_tr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        with torch.no_grad():
            model.eval()
            va_logits = torch.from_numpy(predict(model, X_va))
            va_loss = float(loss_fn(va_logits, y_va))
        va_auc = auroc(y_va.numpy(), va_logits.numpy())
        history.append({"epoch": epoch, "train_loss": total / len(perm), "valid_loss": va_loss,
                        "valid_auroc": va_auc})
        log(f"epoch {epoch:3d}  train loss {total / len(perm):.4f}  valid loss {va_loss:.4f}  "
            f"valid auROC {va_auc:.4f}")
        if va_loss < best - 1e-5:
            best, best_state, best_epoch = va_loss, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            log(f"stopping: no better validation loss for {patience} epochs; best epoch {best_epoch}")
            break
    model.load_state_dict(best_state)
    return model.eval(), history, best_epoch


def pick_demo(test_idx, labels, n_demo):
    """Indices of n_demo test sequences, positives and negatives alternating, a positive first."""
    pos = [i for i in test_idx if labels[i] == 1][: (n_demo + 1) // 2]
    neg = [i for i in test_idx if labels[i] == 0][: n_demo // 2]
    out = []
    for k in range(max(len(pos), len(neg))):
        out += pos[k:k + 1] + neg[k:k + 1]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", required=True, help="directory written by data/simulate.py")
    ap.add_argument("--out", default="data/demo", help="output directory (default data/demo)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--n-demo", type=int, default=300, help="test sequences shipped in --out (default 300)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    names, seqs, labels, motifs = load_simulation(args.sim)
    n = len(names)
    n_tr, n_va = int(0.8 * n), int(0.1 * n)
    tr, va, te = np.arange(n_tr), np.arange(n_tr, n_tr + n_va), np.arange(n_tr + n_va, n)
    X = torch.from_numpy(simulate.one_hot(seqs))
    y = torch.from_numpy(labels.astype(np.float32))
    log(f"{n} sequences of {X.shape[2]} bp: {len(tr)} train, {len(va)} validation, {len(te)} test")

    t0 = time.perf_counter()
    model, history, best_epoch = train(X[tr], y[tr], X[va], y[va], seed=args.seed, max_epochs=args.max_epochs,
                                       patience=args.patience, batch_size=args.batch_size, lr=args.lr, log=log)
    train_seconds = time.perf_counter() - t0

    te_logits = predict(model, X[te])
    demo = pick_demo(te, labels, args.n_demo)
    demo_logits = predict(model, X[demo])

    os.makedirs(args.out, exist_ok=True)
    state_path, ts_path, ep_path = (os.path.join(args.out, f) for f in ("model_state.pt", "model.pt", "model.pt2"))
    torch.save(model.state_dict(), state_path)
    example = X[demo[:8]].contiguous()
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), ts_path)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, ep_path)

    # The saved files must give the trained module's outputs, for any batch size.
    X_demo = X[demo]
    with torch.no_grad():
        ref = model(X_demo)
        ts = torch.jit.load(ts_path)(X_demo)
        ep = torch.export.load(ep_path).module()(X_demo)
        one = torch.export.load(ep_path).module()(X_demo[:1])
        fresh = PaperCNN()
        fresh.load_state_dict(torch.load(state_path, weights_only=True))
        st = fresh.eval()(X_demo)
    diffs = {k: float((v - ref).abs().max()) for k, v in (("torchscript", ts), ("pt2", ep), ("state_dict", st))}
    diffs["pt2_batch1"] = float((one - ref[:1]).abs().max())
    log(f"largest difference from the trained module: {diffs}")
    if max(diffs.values()) > 1e-5:
        raise SystemExit(f"saved models disagree with the trained module: {diffs}")

    demo_records = [simulate.SimulatedSequence(names[i], seqs[i], int(labels[i]),
                    [simulate.MotifSite(r["motif"], r["start"], r["end"], r["strand"], r["site"])
                     for r in motifs[names[i]]]) for i in demo]
    simulate.write_fasta(demo_records, os.path.join(args.out, "test.fa"))
    simulate.write_motifs(demo_records, os.path.join(args.out, "test_motifs.tsv"))
    shutil.copyfile(os.path.join(args.sim, "pwms.json"), os.path.join(args.out, "pwms.json"))

    metrics = {
        "test_auroc": auroc(labels[te], te_logits),
        "test_accuracy": float(((te_logits > 0) == (labels[te] == 1)).mean()),
        "n_test": int(len(te)),
        "demo_auroc": auroc(labels[demo], demo_logits),
        "demo_accuracy": float(((demo_logits > 0) == (labels[demo] == 1)).mean()),
        "n_demo": len(demo),
        "paper_auroc": 0.907,
        "n_train": int(len(tr)),
        "n_valid": int(len(va)),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_seconds": round(train_seconds, 1),
        "threads": args.threads,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patience": args.patience,
        "torch_version": torch.__version__,
        "max_abs_diff_saved_vs_trained": diffs,
        "history": history,
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1)
        fh.write("\n")
    log(f"test auROC {metrics['test_auroc']:.4f}, accuracy {metrics['test_accuracy']:.4f} (n={len(te)}); "
        f"shipped {len(demo)}: auROC {metrics['demo_auroc']:.4f}, accuracy {metrics['demo_accuracy']:.4f}; "
        f"trained in {train_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
