"""Write the Keras fixture models of tests/data/keras/ (run with TensorFlow, tf-keras and Keras 3 installed).

Not part of dnalift and never imported by it or by the tests: the tests read the files this writes. Run it in a
separate virtual environment (TensorFlow must not be installed next to dnalift's torch), from the repository root:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf-keras
    /tmp/tfvenv/bin/python scripts/make_keras_fixtures.py tests/data/keras

(the checked-in files were written by TensorFlow 2.21.0, tf-keras 2.21.0, Keras 3.15.1, h5py 3.14.0, numpy
2.4.6, Python 3.11.7; ``versions.json`` records them). For each architecture below (small random weights, the
layer structure of the real models) it writes the model saved by tf.keras 2 (``NAME.k2.h5``, the dialect of
ENCODE's ChromBPNet files; ``NAME.k2.keras`` for two of them), by Keras 3 (``NAME.k3.h5`` and ``NAME.k3.keras``),
and ``expected.npz`` with fixed inputs and each file's own ``predict`` outputs, keyed ``FILE.inputN`` and
``FILE.outputN``; ``basset_f64.k2.h5`` is computed in float64. The weights and inputs come from fixed seeds, so
running it again writes the same arrays.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2, what TF 2.x wrote as tf.keras)
import keras  # noqa: E402  (Keras 3)
import h5py  # noqa: E402

N_ROWS = 3
#: the models also saved as .keras by tf.keras 2
K2_ZIPS = ("chrombpnet", "basset")


# ------------------------------------------------------------------------------------------- architectures
def bpnet(K, prefix, *, length, filters, n_dil, out_len, name=None):
    """chrombpnet's bpnet_model (training/models/bpnet_model.py and the nested one of
    chrombpnet_with_bias_model.py): dilated residual convs with crops and adds, a profile and a counts head."""
    L = K.layers
    inp = K.Input(shape=(length, 4), name="sequence")
    x = L.Conv1D(filters, kernel_size=21, padding="valid", activation="relu", name=f"{prefix}1st_conv")(inp)
    for i in range(1, n_dil + 1):
        conv_x = L.Conv1D(filters, kernel_size=3, padding="valid", activation="relu", dilation_rate=2 ** i,
                          name=f"{prefix}{i}conv")(x)
        crop = (x.shape[1] - conv_x.shape[1]) // 2
        x = L.Cropping1D(crop, name=f"{prefix}{i}crop")(x)
        x = L.add([conv_x, x])
    prof = L.Conv1D(1, kernel_size=75, padding="valid", name=f"{prefix}prof_out_precrop")(x)
    crop = prof.shape[1] // 2 - out_len // 2
    prof = L.Cropping1D(crop, name=f"{prefix}logitt_before_flatten")(prof)
    profile = L.Flatten(name=f"{prefix}logits_profile_predictions")(prof)
    gap = L.GlobalAveragePooling1D(name="gap")(x)
    counts = L.Dense(1, name=f"{prefix}logcount_predictions")(gap)
    return K.Model(inputs=[inp], outputs=[profile, counts], name=name)


def chrombpnet(K, *, length=250, out_len=100):
    """The combined model (chrombpnet_with_bias_model.py): the bias model and the bias-free model nested, the
    profile logits added, the counts combined by a logsumexp Lambda; and the bias-free model saved alone as
    chrombpnet's save_model_without_bias does (a flat model over the nested one's layers)."""
    bias = bpnet(K, "", length=length, filters=4, n_dil=2, out_len=out_len)
    bias = K.Model(bias.inputs, bias.outputs)  # as load_model gives it back: an unnamed Functional
    wo_bias = bpnet(K, "wo_bias_bpnet_", length=length, filters=8, n_dil=3, out_len=out_len, name="model_wo_bias")
    inp = K.Input(shape=(length, 4), name="sequence")
    b, w = bias(inp), wo_bias(inp)
    profile = K.layers.Add(name="logits_profile_predictions")([w[0], b[0]])
    concat = K.layers.Concatenate(axis=-1)([w[1], b[1]])
    if K is keras:
        lse = lambda x: keras.ops.logsumexp(x, axis=-1, keepdims=True)  # noqa: E731
    else:
        lse = lambda x: tf.math.reduce_logsumexp(x, axis=-1, keepdims=True)  # noqa: E731
    counts = K.layers.Lambda(lse, name="logcount_predictions")(concat)
    combined = K.Model(inputs=[inp], outputs=[profile, counts])
    nested = combined.get_layer("model_wo_bias")
    nobias = K.Model(inputs=nested.inputs, outputs=[nested.output[0], nested.output[1]])
    return {"chrombpnet": combined, "chrombpnet_nobias": nobias, "bias_model": bias}


def basset(K, *, length=120):
    """A Basset-style Sequential: convs with batch norm, ReLU and max pooling, dense layers with dropout, sigmoid
    outputs; an even kernel with 'same' padding, a strided conv, activations inside and outside layers."""
    L = K.layers
    return K.Sequential([
        K.Input(shape=(length, 4)),
        L.Conv1D(8, 19, padding="same", name="conv1"),
        L.BatchNormalization(name="bn1"),
        L.Activation("relu"),
        L.MaxPooling1D(3, name="pool1"),
        L.Conv1D(6, 6, padding="same", use_bias=False, name="conv2_even"),
        L.BatchNormalization(name="bn2"),
        L.ReLU(),
        L.MaxPooling1D(pool_size=2, strides=1, padding="same"),
        L.Conv1D(5, 4, strides=2, padding="same", activation="elu", name="conv3_strided"),
        L.AveragePooling1D(2),
        L.Flatten(),
        L.Dense(16, activation="relu"),
        L.Dropout(0.3),
        L.Dense(12),
        L.BatchNormalization(),
        L.LeakyReLU(),
        L.Dense(3, activation="sigmoid", name="tasks"),
    ], name="basset")


def conv2d(K, *, length=60):
    """A Conv2D model on (1, L, 4) input, as DeepSEA-style Keras ports wrote them."""
    L = K.layers
    inp = K.Input(shape=(1, length, 4), name="dna")
    x = L.Conv2D(6, (1, 7), padding="valid", activation="relu", name="c1")(inp)
    x = L.MaxPooling2D((1, 3), name="p1")(x)
    x = L.Conv2D(4, (1, 4), padding="same", activation="tanh", name="c2_even")(x)
    x = L.AveragePooling2D((1, 2), padding="same", name="p2")(x)
    flat = L.Flatten()(x)
    y = L.Dense(5, activation="softplus")(flat)
    z = L.GlobalMaxPooling2D()(x)
    out = L.Dense(2, activation="softmax", name="out")(L.Concatenate()([y, z]))
    return K.Model(inp, out, name="conv2d_model")


def two_inputs(K, *, length=50):
    """A sequence and a control track (the original BPNet's layout), with the merge layers, padding, permute
    and reshape, the parametric activations and a second output."""
    L = K.layers
    seq = K.Input(shape=(length, 4), name="sequence")
    ctl = K.Input(shape=(length, 2), name="control")
    x = L.ZeroPadding1D((2, 3), name="pad")(seq)
    x = L.Conv1D(6, 6, activation="selu", name="c1")(x)
    c = L.Conv1D(6, 1, name="c_ctl")(ctl)
    merged = [L.Add()([x, c]), L.Subtract()([x, c]), L.Multiply()([x, c]), L.Average()([x, c]),
              L.Maximum()([x, c])]
    x = L.Concatenate(axis=-1, name="merge")(merged)
    x = L.PReLU(shared_axes=[1], name="prelu")(x)
    x = L.Conv1D(4, 5, dilation_rate=2, padding="same", name="c2")(x)
    x = L.ELU(alpha=0.5)(x)
    p = L.Permute((2, 1), name="perm")(x)
    p = L.Reshape((4 * length,), name="reshape")(p)
    counts = L.Dense(1, name="logcount_predictions")(L.GlobalAveragePooling1D()(x))
    gm = L.GlobalMaxPooling1D()(x)
    x = L.Dense(3, activation="tanh")(L.Concatenate()([p, gm]))
    x = L.Activation("softmax", name="probs")(x)
    return K.Model([seq, ctl], [x, counts], name="two_inputs")


def recurrent(K, *, length=40):
    """Convolution, then LSTM and GRU layers, alone and Bidirectional, one going backwards."""
    L = K.layers
    inp = K.Input(shape=(length, 4), name="sequence")
    x = L.Conv1D(6, 7, activation="relu", name="conv")(inp)
    x = L.MaxPooling1D(2)(x)
    x = L.Bidirectional(L.LSTM(5, return_sequences=True), name="bilstm")(x)
    last = L.GRU(4, name="gru")(x)
    both = L.Bidirectional(L.GRU(3), merge_mode="ave", name="bigru")(x)
    back = L.GlobalAveragePooling1D()(L.LSTM(3, return_sequences=True, go_backwards=True, name="lstm_back")(x))
    out = L.Dense(2, name="out")(L.Concatenate()([last, both, back]))
    return K.Model(inp, out, name="recurrent")


def shared(K, *, length=40):
    """Shared layers: one nested Sequential tower and one Dense layer, each called twice (on the sequence and
    on it shifted by three positions)."""
    L = K.layers
    inp = K.Input(shape=(length, 4), name="sequence")
    tower = K.Sequential([K.Input(shape=(length, 4)), L.Conv1D(4, 5, activation="relu"), L.GlobalMaxPooling1D()],
                         name="tower")
    shifted = L.ZeroPadding1D((3, 0))(L.Cropping1D((0, 3))(inp))
    head = L.Dense(2, name="head")
    out = L.Add(name="both")([head(tower(inp)), head(tower(shifted))])
    return K.Model(inp, out, name="shared")


# ------------------------------------------------------------------------------------------------- writing
def randomize(model, rng):
    """Random weights (batch-norm statistics too, so that they matter; variances positive)."""
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.name:
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        w.assign(value.astype(np.dtype(getattr(w.dtype, "name", w.dtype))))


def inputs_for(model, rng):
    arrays = []
    for t in model.inputs:
        shape = (N_ROWS, *t.shape[1:])
        if shape[-1] == 4:
            flat = np.eye(4, dtype="float32")[rng.integers(0, 4, int(np.prod(shape[:-1])))]
            arrays.append(flat.reshape(shape))
        else:
            arrays.append(rng.uniform(0, 2, shape).astype("float32"))
    return arrays


def save(models, dialect, out: Path, expected: dict, rng):
    for name, model in models.items():
        randomize(model, rng) if name != "chrombpnet" else None
        arrays = inputs_for(model, rng)
        if dialect == "k2":
            model.save(out / f"{name}.k2.h5", save_format="h5")
            files = [f"{name}.k2.h5"]
            if name in K2_ZIPS:  # tf.keras 2.13+ also writes the .keras zip
                model.save(out / f"{name}.k2.keras")
                files.append(f"{name}.k2.keras")
        else:
            model.save(out / f"{name}.k3.h5")
            model.save(out / f"{name}.k3.keras")
            files = [f"{name}.k3.h5", f"{name}.k3.keras"]
        predicted = model.predict(arrays if len(arrays) > 1 else arrays[0], verbose=0)
        predicted = predicted if isinstance(predicted, (list, tuple)) else [predicted]
        for f in files:
            for i, a in enumerate(arrays):
                expected[f"{f}.input{i}"] = a
            for i, p in enumerate(predicted):
                expected[f"{f}.output{i}"] = np.asarray(p)


def build_all(K, rng):
    models = {}
    cbp = chrombpnet(K)
    # the nested models get their weights first: the combined model and the flat bias-free model share them
    randomize(cbp["bias_model"], rng)
    randomize(cbp["chrombpnet_nobias"], rng)
    models.update(cbp)
    models["basset"] = basset(K)
    models["conv2d"] = conv2d(K)
    models["two_inputs"] = two_inputs(K)
    models["recurrent"] = recurrent(K)
    models["shared"] = shared(K)
    return models


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict = {}
    for dialect, K in (("k2", tf_keras), ("k3", keras)):
        rng = np.random.default_rng(20)
        K.utils.set_random_seed(20)
        save(build_all(K, rng), dialect, out, expected, rng)
    # float64: Keras computing in double precision
    tf_keras.backend.set_floatx("float64")
    rng = np.random.default_rng(64)
    model = basset(tf_keras)
    randomize(model, rng)
    arrays = [a.astype("float64") for a in inputs_for(model, rng)]
    model.save(out / "basset_f64.k2.h5", save_format="h5")
    expected["basset_f64.k2.h5.input0"] = arrays[0]
    expected["basset_f64.k2.h5.output0"] = model.predict(arrays[0], verbose=0)
    np.savez_compressed(out / "expected.npz", **expected)
    versions = {"python": sys.version.split()[0], "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                "keras": keras.__version__, "h5py": h5py.__version__, "numpy": np.__version__,
                "script": "scripts/make_keras_fixtures.py"}
    (out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/keras")
