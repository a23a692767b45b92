"""Keras model files (issue 20), read with h5py only: each fixture of tests/data/keras/ (written by tf.keras 2.x
and Keras 3 with ``scripts/make_keras_fixtures.py``; versions in ``versions.json``) must compute what Keras'
own ``predict`` computed when it was saved, score with sums equal to delta, load from the CLI with TensorFlow
and Keras unimportable, and every damaged or unsupported file must be refused with one line.

The references: Keras' predictions stored next to each file (the file and Keras agree), and for the ENCODE-style
bias-free ChromBPNet an explicitly written PyTorch BPNet (``nn.Conv1d`` on ``(n, 4, L)``) holding the same
weights, whose DeepLIFT scores the converted model must reproduce (the permutes, crops and flatten of the
channels-last conversion change nothing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner

from conftest import write_fasta
from dnalift.attribution.engine import attribute
from dnalift.cli import cli
from dnalift.errors import ModelFormatError, ModelInputError
from dnalift.models import load_model

DATA = Path(__file__).parents[1] / "data" / "keras"
EXPECTED = np.load(DATA / "expected.npz")
FILES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".h5", ".keras"))
KERAS2 = [f for f in FILES if f.endswith(".k2.h5")]
RECURRENT = [f for f in FILES if f.startswith("recurrent.")]  # exported to aten.lstm / aten.gru
L_CBP = 250  # the ChromBPNet fixtures' input length (100 profile positions)


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model(DATA / name)
        return cache[name]
    return get


def keras_inputs(name):
    n = sum(1 for k in EXPECTED.files if k.startswith(f"{name}.input"))
    return [EXPECTED[f"{name}.input{i}"] for i in range(n)]


def keras_outputs(name):
    n = sum(1 for k in EXPECTED.files if k.startswith(f"{name}.output"))
    return [EXPECTED[f"{name}.output{i}"] for i in range(n)]


# ----------------------------------------------------------------------------------------------- predictions
def _compare(run, name, dtype, row_shape):
    ins = [torch.from_numpy(a) for a in keras_inputs(name)]
    seq = next(i for i, a in enumerate(ins) if a.shape[-1] == 4)
    x = ins[seq].reshape(len(ins[seq]), *row_shape).to(dtype)
    others = [a.to(dtype) for i, a in enumerate(ins) if i != seq]
    with torch.no_grad():
        out = run(x, *others)
    got = list(out.values()) if isinstance(out, dict) else [out]
    want = keras_outputs(name)
    assert len(got) == len(want)
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    for g, w in zip(got, want):
        assert tuple(g.shape) == w.shape
        assert np.abs(g.numpy() - w).max() <= tolerance * np.abs(w).max(), name


@pytest.mark.parametrize("name", FILES)
def test_converted_model_equals_keras_predict(name):
    """Every fixture: the converted module computes what Keras' predict gave (float64 where Keras ran float64)."""
    from dnalift.models.files import keras

    converted = keras.convert(keras.read_keras(DATA / name, name, "keras" if name.endswith(".keras") else "h5"),
                              name)
    dtype = next(converted.module.parameters()).dtype
    assert dtype == (torch.float64 if "f64" in name else torch.float32)
    _compare(converted.module, name, dtype, converted.row)


#: exported in the quick suite (the others are in the slow one): each dialect and container, each architecture
EXPORTED = ["chrombpnet_nobias.k2.h5", "chrombpnet.k2.h5", "bias_model.k2.h5", "chrombpnet.k3.keras", "basset.k3.h5",
            "basset_f64.k2.h5", "conv2d.k2.h5", "two_inputs.k3.keras", "shared.k2.h5"]


@pytest.mark.parametrize("name", EXPORTED + [pytest.param(f, marks=pytest.mark.slow) for f in FILES
                                             if f not in EXPORTED])
def test_loaded_program_equals_keras_predict(loaded, name):
    """What dnalift runs (the exported program of load_model) computes what Keras' predict gave."""
    m = loaded(name)
    assert m.format == "keras"
    _compare(m.module(), name, m.input_dtype, m.input_shape)


def test_the_fixtures_were_written_by_both_dialects():
    versions = json.loads((DATA / "versions.json").read_text())
    assert versions["tf_keras"].startswith("2.") and versions["keras"].startswith("3.")
    with h5py.File(DATA / "chrombpnet.k2.h5") as f:
        assert f.attrs["keras_version"].startswith("2.")
    with h5py.File(DATA / "chrombpnet.k3.h5") as f:
        assert f.attrs["keras_version"].startswith("3.")
    assert zipfile.is_zipfile(DATA / "chrombpnet.k3.keras")


@pytest.mark.parametrize("name", ["chrombpnet_nobias.k2.h5", "chrombpnet.k3.keras", "bias_model.k3.h5"])
def test_chrombpnet_outputs_are_the_profile_and_counts_targets(loaded, name):
    from dnalift.attribution.engine import outputs_of

    m = loaded(name)
    assert m.input_shape == (L_CBP, 4) and m.layout == "NLC" and m.input_length == L_CBP
    table = outputs_of(m)
    assert "profile" in table[0]["targets"] and table[0]["name"].endswith("logits_profile_predictions")
    assert "counts" in table[1]["targets"] and table[1]["name"].endswith("logcount_predictions")


# ----------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("name", EXPORTED)
def test_scores_sum_to_delta_in_float64(loaded, name):
    m = loaded(name)
    x = torch.from_numpy(keras_inputs(name)[0 if "two" not in name else 0]).double()
    x = x.reshape(len(x), -1, 4).transpose(1, 2)  # dnalift takes (n, 4, L) and gives NLC models (n, L, 4)
    rng = np.random.default_rng(1)
    refs = torch.from_numpy(np.eye(4)[rng.integers(0, 4, (len(x), 2, x.shape[-1]))]).transpose(2, 3)
    names = [n for n in m.output_shapes if n]
    targets = ["counts", "profile"] if "chrombpnet" in name or "bias" in name else \
        (["logcount_predictions", "probs:1"] if names else [0])
    a = attribute(m, x, refs, target=targets, dtype=torch.float64)
    change = a.predictions - a.reference_predictions
    total = a.contributions.sum(dim=(-2, -1))
    assert torch.allclose(total, change, rtol=0, atol=1e-10 * max(1.0, float(change.abs().max())))
    assert float(change.abs().max()) > 1e-6  # the scores are not trivially zero


@pytest.mark.slow
def test_recurrent_layers_score_and_sum_to_delta(loaded):
    """Keras LSTM/GRU/Bidirectional become torch's recurrent ops, which dnalift writes out as their cells:
    the model scores and sums to delta in float64."""
    m = loaded("recurrent.k2.h5")
    x = torch.from_numpy(keras_inputs("recurrent.k2.h5")[0]).double().transpose(1, 2)
    refs = x.roll(3, dims=-1)[:, None]
    a = attribute(m, x, refs, dtype=torch.float64)
    torch.testing.assert_close(a.contributions.sum((-2, -1)), a.predictions - a.reference_predictions,
                               rtol=0, atol=1e-9)


class ExplicitBPNet(nn.Module):
    """chrombpnet's bias-free BPNet written out in PyTorch, channels first, from the Keras file's arrays."""

    def __init__(self, path):
        super().__init__()
        with h5py.File(path) as f:
            g = f["model_weights"]
            w = {name: {k.split(":")[0]: nn.Parameter(torch.from_numpy(v[()]), requires_grad=False)
                        for k, v in g[name][name].items()} for name in g if name in g[name]}
        self.weights = nn.ParameterList([p for layer in w.values() for p in layer.values()])
        self.convs = [(w[n]["kernel"], w[n]["bias"], d) for n, d in
                      [("wo_bias_bpnet_1st_conv", 1), ("wo_bias_bpnet_1conv", 2), ("wo_bias_bpnet_2conv", 4),
                       ("wo_bias_bpnet_3conv", 8)]]
        self.prof = (w["wo_bias_bpnet_prof_out_precrop"]["kernel"], w["wo_bias_bpnet_prof_out_precrop"]["bias"])
        self.dense = w["wo_bias_bpnet_logcount_predictions"]

    def forward(self, x):  # x (n, 4, L)
        (k0, b0, _), *dilated = self.convs
        h = F.relu(F.conv1d(x, k0.permute(2, 1, 0), b0))  # Keras kernels are (width, in, out)
        for k, b, d in dilated:
            c = F.relu(F.conv1d(h, k.permute(2, 1, 0), b, dilation=d))
            crop = (h.shape[-1] - c.shape[-1]) // 2
            h = c + h[:, :, crop:h.shape[-1] - crop]
        p = F.conv1d(h, self.prof[0].permute(2, 1, 0), self.prof[1])
        crop = p.shape[-1] // 2 - 50
        profile = p[:, 0, crop:crop + 100]
        counts = F.linear(h.mean(-1), self.dense["kernel"].t(), self.dense["bias"])
        return {"profile": profile, "counts": counts}


def test_same_scores_as_an_explicit_pytorch_bpnet(loaded):
    """The converted chrombpnet_nobias and the same network written by hand agree on outputs and scores."""
    m = loaded("chrombpnet_nobias.k2.h5")
    explicit = ExplicitBPNet(DATA / "chrombpnet_nobias.k2.h5")
    x = torch.from_numpy(keras_inputs("chrombpnet_nobias.k2.h5")[0]).double().transpose(1, 2)
    with torch.no_grad():
        want = explicit(x.float())
    want_keras = keras_outputs("chrombpnet_nobias.k2.h5")
    np.testing.assert_allclose(want["counts"].numpy(), want_keras[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want["profile"].numpy(), want_keras[0], rtol=0, atol=1e-5 * np.abs(want_keras[0]).max())
    rng = np.random.default_rng(2)
    refs = torch.from_numpy(np.eye(4)[rng.integers(0, 4, (len(x), 3, L_CBP))]).transpose(2, 3)
    ours = attribute(m, x, refs, target=["counts", "profile"], dtype=torch.float64)
    theirs = attribute(explicit, x, refs, target=["counts", "profile"], dtype=torch.float64)
    torch.testing.assert_close(ours.predictions, theirs.predictions, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.contributions, theirs.contributions, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.hypothetical, theirs.hypothetical, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------------- the CLI
_NO_TENSORFLOW = """
import sys
for name in ("tensorflow", "keras", "tf_keras", "tensorflow.keras"):
    sys.modules[name] = None  # an import of any of them now raises ImportError
for name in ("tensorflow", "keras", "tf_keras"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} is importable")
from dnalift.cli import cli
for args in RUNS:
    try:
        cli(args, standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
loaded = sorted(n for n in sys.modules if n.split(".")[0] in ("tensorflow", "keras", "tf_keras")
                and sys.modules[n] is not None)
if loaded:
    raise SystemExit(f"imported {loaded}")
print("ok")
"""


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_cli")
    rng = np.random.default_rng(0)
    write_fasta(d / "genome.fa", [(c, "".join(rng.choice(list("ACGT"), n))) for c, n in
                                  [("chr1", 1200), ("chr2", 700)]])
    peaks = [("chr1", 200, 500, 140), ("chr1", 700, 900, 60), ("chr2", 300, 600, 110)]
    (d / "peaks.narrowPeak").write_text("".join(f"{c}\t{s}\t{e}\tpeak{i}\t0\t.\t1\t-1\t-1\t{m}\n"
                                                for i, (c, s, e, m) in enumerate(peaks)))
    write_fasta(d / "seqs.fa", [(f"s{i}", "".join(rng.choice(list("ACGT"), 120))) for i in range(3)])
    return d


def test_cli_scores_keras_files_with_tensorflow_unimportable(genome, tmp_path):
    d = genome
    runs = [["score", str(DATA / "chrombpnet_nobias.k2.h5"), "--regions", str(d / "peaks.narrowPeak"), "--genome",
             str(d / "genome.fa"), "--center", "summit", "--target", "counts", "--target", "profile", "--n-refs",
             "2", "-o", str(tmp_path / "cbp.h5"), "-q"],
            ["score", str(DATA / "basset.k3.keras"), str(d / "seqs.fa"), "--n-refs", "2", "--target", "1",
             "-o", str(tmp_path / "basset.h5"), "-q"]]
    res = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW.replace("RUNS", repr(runs))], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2], timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]
    for target in ("counts", "profile"):
        with h5py.File(tmp_path / f"cbp.{target}.h5") as f:
            assert f["shap/seq"].shape == (3, 4, L_CBP)  # the width came from the model
            assert f.attrs["target_kind"] == ("sum" if target == "counts" else "profile")
            change = f["predictions"][:] - f["reference_predictions"][:]
            assert np.abs(f["projected_shap/seq"][:].sum((1, 2)) - change).max() <= 1e-4 * np.abs(change).max()
    with h5py.File(tmp_path / "basset.h5") as f:
        assert f["shap/seq"].shape == (3, 4, 120)
        X = torch.from_numpy(f["raw/seq"][:].astype(np.float32)).transpose(1, 2)
        predictions, change = f["predictions"][:], f["predictions"][:] - f["reference_predictions"][:]
        assert np.abs(f["projected_shap/seq"][:].sum((1, 2)) - change).max() <= 1e-4 * np.abs(change).max()
    # the scored model (first layer mean-normalised, 'same' padding corrected per position) computes what Keras does
    with torch.no_grad():
        want = load_model(DATA / "basset.k3.keras").module()(X)[:, 1]
    np.testing.assert_allclose(predictions, want.numpy(), rtol=1e-5, atol=1e-6)


def test_info_lists_layers_inputs_outputs_and_targets():
    res = CliRunner().invoke(cli, ["info", str(DATA / "chrombpnet.k2.h5"), "-q"])
    assert res.exit_code == 0, res.output
    assert "--target profile" in res.output and "--target counts" in res.output
    assert "logcount_predictions" in res.output and "Lambda" in res.output and "logsumexp" in res.output.lower()
    assert "model_wo_bias.wo_bias_bpnet_1st_conv" in res.output and "Conv1D" in res.output
    assert "(n, 250, 4)" in res.output


# ----------------------------------------------------------------------------------------------- refusals
def _edit_config(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return dst


def _refusal(path, **kwargs) -> str:
    with pytest.raises((ModelFormatError, ModelInputError)) as e:
        load_model(path, **kwargs)
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    data = (DATA / "basset.k2.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:len(data) // 2])
    assert "damaged" in _refusal(tmp_path / "cut.h5")
    (tmp_path / "noise.h5").write_bytes(data[:8] + bytes(4000))
    assert "damaged" in _refusal(tmp_path / "noise.h5")
    zdata = (DATA / "basset.k3.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(zdata[:len(zdata) // 2])
    assert "cut.keras" in _refusal(tmp_path / "cut.keras")


def test_weights_only_savedmodel_and_future_versions_are_refused(tmp_path):
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"conv1d"])
        f.attrs["keras_version"] = "2.15.0"
        f.create_group("conv1d").attrs["weight_names"] = np.array([b"conv1d/kernel:0"])
    assert "weights only" in _refusal(tmp_path / "weights.h5")
    saved = tmp_path / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    assert "SavedModel" in _refusal(saved)
    with zipfile.ZipFile(DATA / "basset.k3.keras") as zin, zipfile.ZipFile(tmp_path / "v4.keras", "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "metadata.json":
                data = json.dumps({"keras_version": "4.0.0"}).encode()
            zout.writestr(item, data)
    assert "Keras 4.0.0" in _refusal(tmp_path / "v4.keras")


def test_a_result_file_is_still_not_a_model(tmp_path):
    with h5py.File(tmp_path / "scores.h5", "w") as f:
        f["shap/seq"] = np.zeros((1, 4, 10), dtype="float32")
    assert "not a" in _refusal(tmp_path / "scores.h5")


def test_unknown_lambda_and_layers_are_refused_before_running(tmp_path):
    def rename_lambda(config):
        lam = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Lambda")
        lam["config"]["function"][0] = "AAAA"  # code that mentions no logsumexp

    message = _refusal(_edit_config(DATA / "chrombpnet.k2.h5", tmp_path / "lambda.h5", rename_lambda))
    assert "'logcount_predictions' (Lambda)" in message and "never runs" in message

    def old_gru(config):
        gru = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "GRU")
        gru["config"]["reset_after"] = False

    message = _refusal(_edit_config(DATA / "recurrent.k2.h5", tmp_path / "gru.h5", old_gru))
    assert "'gru' (GRU)" in message and "reset_after=False" in message

    def unknown(config):
        config["config"]["layers"][2]["class_name"] = "MyCustomLayer"

    message = _refusal(_edit_config(DATA / "basset.k2.h5", tmp_path / "custom.h5", unknown))
    assert "'bn1' (MyCustomLayer)" in message and "Conv1D" in message


def test_keras_2_0_sequential_configs_are_lists_of_layers(tmp_path):
    """Keras 2.0-2.2 wrote a Sequential's config as its list of layers (and no InputLayer)."""
    from dnalift.models.files import keras

    def old_style(config):
        layers = config["config"]["layers"]
        layers[1]["config"]["batch_input_shape"] = layers[0]["config"]["batch_input_shape"]
        config["config"] = layers[1:]

    path = _edit_config(DATA / "basset.k2.h5", tmp_path / "old.h5", old_style)
    with h5py.File(path, "r+") as f:
        f.attrs["keras_version"] = "2.1.6"
    converted = keras.convert(keras.read_keras(path, "old", "h5"), "old")
    assert converted.row == (120, 4)
    x = torch.from_numpy(keras_inputs("basset.k2.h5")[0])
    with torch.no_grad():
        got = converted.module(x).numpy()
    want = keras_outputs("basset.k2.h5")[0]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_width_must_match_the_model():
    message = _refusal(DATA / "basset.k2.h5", input_length=100)
    assert "120 bp" in message and "--width" in message
    assert load_model(DATA / "basset.k2.h5", input_length=120).input_length == 120


# ----------------------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("size, kernel, stride, dilation, expected", [
    (10, 4, 1, 1, (1, 2)),   # an even kernel: the extra position goes to the end, as TensorFlow pads
    (10, 3, 1, 1, (1, 1)),
    (10, 4, 2, 1, (1, 1)),   # ceil(10 / 2) = 5 outputs need (5 - 1) * 2 + 4 = 12 positions
    (11, 3, 2, 1, (1, 1)),   # 6 outputs need 13
    (10, 3, 1, 2, (2, 2)),   # dilation 2: a span of 5
    (10, 1, 3, 1, (0, 0)),   # 4 outputs need 10
])
def test_same_padding_is_tensorflows(size, kernel, stride, dilation, expected):
    from dnalift.models.files.keras_layers import same_padding

    assert same_padding(size, kernel, stride, dilation) == expected


def test_lambda_code_is_never_unmarshalled(tmp_path):
    """chrombpnet's Lambda is recognised from its name and the names in its code's bytes, never loaded: bytes
    that are not marshalled code at all (marshal.loads would fail on them) convert the same."""
    import base64
    import marshal

    from dnalift.models.files import keras

    junk = b"\xff\x00 not bytecode: reduce_logsumexp \x00"
    with pytest.raises((ValueError, EOFError, TypeError)):
        marshal.loads(junk)

    def replace_code(config):
        lam = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Lambda")
        lam["config"]["function"][0] = base64.b64encode(junk).decode()

    path = _edit_config(DATA / "chrombpnet.k2.h5", tmp_path / "junk_lambda.h5", replace_code)
    converted = keras.convert(keras.read_keras(path, "junk_lambda", "h5"), "junk_lambda")
    assert [r.module for r in converted.rows if r.class_name == "Lambda"] == ["LogSumExp"]
    x = torch.from_numpy(keras_inputs("chrombpnet.k2.h5")[0])
    with torch.no_grad():
        counts = converted.module(x)["logcount_predictions"]
    np.testing.assert_allclose(counts.numpy(), keras_outputs("chrombpnet.k2.h5")[1], rtol=1e-5)


def test_same_pooling_ignores_the_padded_positions():
    """TensorFlow's "same" pooling: a window over the padding averages (or takes the max of) its real entries."""
    from dnalift.models.files.keras_ops import Pool, _pairs

    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 5, 1)  # (n, L, C)
    assert Pool("avg", (2,), (2,), "same")(x).flatten().tolist() == [1.5, 3.5, 5.0]
    assert Pool("max", (2,), (2,), "same")(-x).flatten().tolist() == [-1.0, -3.0, -5.0]
    assert Pool("avg", (2,), (2,), "valid")(x).flatten().tolist() == [1.5, 3.5]
    assert _pairs(3, 1) == ((3, 3),) and _pairs([2, 3], 1) == ((2, 3),)
    assert _pairs([[1, 1], [2, 3]], 2) == ((1, 1), (2, 3)) and _pairs([1, 2], 2) == ((1, 1), (2, 2))
