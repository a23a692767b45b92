"""BPNet and ChromBPNet from the command line (issue 11): small bpnet-lite models saved as bpnet-lite saves them
(``torch.save`` of the whole module), BED regions on a genome, ``--target counts --target profile --target
profile-fixed`` in one run: every file sums to delta; ``counts`` and ``profile`` match bpnet-lite's own wrappers and
``deep_lift_shap``, ``profile-fixed`` tangermeme on fixed-weight wrappers, on the same references."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dnalift.cli import cli
from test_bpnet_files import L, small_bpnet  # n_layers=2: 206 bases, 100 profile positions

bpnet = pytest.importorskip("bpnetlite.bpnet")
chrombpnet = pytest.importorskip("bpnetlite.chrombpnet")
tangermeme = pytest.importorskip("tangermeme.deep_lift_shap")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpnet_cli")
    rng = np.random.default_rng(0)
    chroms = {"chr1": 1500, "chr2": 900}
    with open(d / "genome.fa", "w") as f:
        for name, size in chroms.items():
            f.write(f">{name}\n{''.join(rng.choice(list('ACGT'), size))}\n")
    peaks = [("chr1", 200, 500, 140), ("chr1", 800, 1000, 60), ("chr2", 300, 700, 210), ("chr2", 500, 600, 10)]
    with open(d / "peaks.narrowPeak", "w") as f:
        for i, (chrom, start, end, summit) in enumerate(peaks):
            f.write(f"{chrom}\t{start}\t{end}\tpeak{i}\t0\t.\t1.0\t-1\t-1\t{summit}\n")
    models = {"bpnet": (small_bpnet(1, n_control_tracks=2), 2),
              "chrombpnet": (chrombpnet.ChromBPNet(bias=small_bpnet(2, n_outputs=1),
                                                   accessibility=small_bpnet(3, n_outputs=1)).eval(), 0)}
    for name, (model, _) in models.items():
        torch.save(model, d / f"{name}.torch")   # as bpnet-lite's fit() saves
        # in float64, for the comparisons: the first-layer normalisation of a float32 model rounds its weights
        # (1e-8), which the profile target's secants amplify where a logit barely moves
        torch.save(copy.deepcopy(model).double(), d / f"{name}64.torch")
    return d, models


class _Fixed(torch.nn.Module):
    """The profile logits weighted by constant weights: the ``profile-fixed`` target of one sequence."""

    def __init__(self, model, n_controls, weights):
        super().__init__()
        self.model, self.n_controls, self.weights = model, n_controls, weights

    def forward(self, x):
        zeros = torch.zeros(len(x), self.n_controls, x.shape[-1], dtype=x.dtype)
        profile = (self.model(x, zeros) if self.n_controls else self.model(x))[0]
        logits = profile.reshape(len(x), -1)
        return (self.weights * (logits - logits.mean(1, keepdim=True))).sum(1, keepdim=True)


TARGETS = {"counts": "sum", "profile": "profile", "profile-fixed": "profile-fixed"}


def _theirs(model64, n_controls, target, X, R):
    """bpnet-lite's (counts, profile) or tangermeme's on fixed weights (profile-fixed) scores, (n, 4, L)."""
    from bpnetlite.attribute import deep_lift_shap

    args = (torch.zeros(len(X), n_controls, L, dtype=torch.float64),) if n_controls else None
    if target != "profile-fixed":
        wrapper = bpnet.CountWrapper(model64) if target == "counts" else bpnet.ProfileWrapper(model64)
        return deep_lift_shap(wrapper, X, args=args, references=R, hypothetical=True, device="cpu",
                              warning_threshold=1e9)
    with torch.no_grad():
        profile = model64(X, *(args or ()))[0]
    weights = torch.softmax(profile.reshape(len(X), -1), -1)
    extra = {chrombpnet._Exp: tangermeme._nonlinear, chrombpnet._Log: tangermeme._nonlinear}
    return torch.cat([tangermeme.deep_lift_shap(_Fixed(model64, n_controls, weights[i]), X[i:i + 1],
                                                references=R[i:i + 1], hypothetical=True, warning_threshold=1e9,
                                                additional_nonlinear_ops=extra) for i in range(len(X))])


@pytest.mark.parametrize("name", ["bpnet", "chrombpnet"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_counts_and_profile_from_bed_regions(files, name, precision, tmp_path):
    d, models = files
    out = tmp_path / "scores.h5"
    model_file = d / f"{name}{'64' if precision == 'float64' else ''}.torch"
    res = CliRunner().invoke(cli, ["score", str(model_file), "--trust-model", "--regions",
                                   str(d / "peaks.narrowPeak"), "--genome", str(d / "genome.fa"), "--width", str(L),
                                   "--center", "summit", "--target", "counts", "--target", "profile", "--target",
                                   "profile-fixed", "-o", str(out), "--n-refs", "3", "--precision", precision, "-q"])
    assert res.exit_code == 0, res.output
    paths = {t: tmp_path / f"scores.{t}.h5" for t in TARGETS}
    kept = [f"scores.{t}.regions.narrowPeak" for t in TARGETS]  # the scored peaks beside each result
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in paths.values()] + kept)
    model, n_controls = models[name]
    model64 = copy.deepcopy(model).double().eval()
    for target, path in paths.items():
        with h5py.File(path) as f:
            X = torch.from_numpy(f["raw/seq"][:].astype(np.float64))
            hyp = torch.from_numpy(f["shap/seq"][:].astype(np.float64))
            projected = f["projected_shap/seq"][:].astype(np.float64)
            change = f["predictions"][:] - f["reference_predictions"][:]
            deltas = f["deltas"][:]
            names = f["names"].asstr()[:]
            assert f.attrs["target"] == target and f.attrs["target_kind"] == TARGETS[target]
        assert list(names) == ["peak0", "peak1", "peak2", "peak3"]
        bound = 1e-9 * np.abs(change).clip(min=1e-3).max() if precision == "float64" else 1e-3 * np.abs(change).mean()
        assert np.abs(projected.sum((1, 2)) - change).max() <= max(bound, 1e-6 * np.abs(change).max()) + 1e-7
        assert np.abs(deltas).max() <= max(bound, 1e-12)
        if precision != "float64":
            continue
        from dnalift.references.make import dinucleotide_shuffle

        R = torch.from_numpy(dinucleotide_shuffle(X.numpy().astype(np.int8), n=3, seed=0, names=list(names))
                             .astype(np.float64))
        theirs = _theirs(model64, n_controls, target, X, R)
        # float32 storage: within 1e-6 of each sequence's largest score
        assert ((theirs - hyp).abs().amax((1, 2)) <= 1e-6 * hyp.abs().amax((1, 2))).all(), (name, target)


def test_info_lists_both_heads_and_the_control_input(files):
    d, _ = files
    res = CliRunner().invoke(cli, ["info", str(d / "bpnet.torch"), "--trust-model", "--width", str(L), "-q"])
    assert res.exit_code == 0, res.output
    assert "input 2: (n, 2, 206) a control input: zeros when scored" in res.output
    assert "0: (n, 2, 100); --target profile | profile-fixed | 0:0 .. 0:199" in res.output
    assert "1: (n, 1); --target counts | 1" in res.output
    assert "the model can be scored" in res.output


def test_each_target_file_exports_to_bigwig_and_modisco(files, tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig")
    d, _ = files
    out = tmp_path / "scores.h5"
    res = CliRunner().invoke(cli, ["score", str(d / "bpnet.torch"), "--trust-model", "--regions",
                                   str(d / "peaks.narrowPeak"), "--genome", str(d / "genome.fa"), "--width", str(L),
                                   "--center", "summit", "--target", "counts", "--target", "profile", "-o", str(out),
                                   "--n-refs", "2", "-q"])
    assert res.exit_code == 0, res.output
    for target in ("counts", "profile"):
        scores = tmp_path / f"scores.{target}.h5"
        res = CliRunner().invoke(cli, ["export", str(scores), "--format", "bigwig", "-o",
                                       str(tmp_path / f"{target}.bw"), "-q"])
        assert res.exit_code == 0, res.output
        with h5py.File(scores) as f:
            contributions = f["projected_shap/seq"][:].sum(1)
            chrom, start = f["regions/chrom"].asstr()[0], int(f["regions/start"][0])
        bw = pyBigWig.open(str(tmp_path / f"{target}.bw"))
        assert bw.chroms() == {"chr1": 1500, "chr2": 900}
        # peak0 (chr1, summit at 340) overlaps no other window: its values are its own contributions
        np.testing.assert_allclose(bw.values(chrom, start, start + 20), contributions[0, :20], rtol=1e-6)
        bw.close()
        res = CliRunner().invoke(cli, ["export", str(scores), "--format", "modisco", "-o",
                                       str(tmp_path / target), "--window", "100", "-q"])
        assert res.exit_code == 0, res.output
        hyp = np.load(tmp_path / f"{target}.hyp.npz")["arr_0"]
        assert hyp.shape == (4, 4, 100) and np.isfinite(hyp).all() and np.abs(hyp).max() > 0
