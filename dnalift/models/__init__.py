"""Model files -> the program dnalift runs (:mod:`dnalift.models.export`).

Formats, detected from the file's content (zip member names, magic bytes), never from its name
(:mod:`dnalift.models.files.sniff`), each read by one loader of :data:`~dnalift.models.files.loaders.LOADERS`:

- ``"pt2"``: a zip archive whose ``archive_format`` member reads ``pt2`` (``torch.export.save``). Loaded
  with ``torch.export.load``; the preferred format. ``torch.export.load`` itself falls back to full
  unpickling for sample inputs or weights that ``weights_only`` loading rejects, so without ``trust=True``
  every pickle in the archive is first checked with ``torch.load(weights_only=True)`` and a file that needs
  more is refused (:class:`~dnalift.errors.UntrustedModelError`). A program with a fixed batch size, or
  exported in training mode, is exported again with a variable batch / in eval mode.
- ``"torchscript"``: a zip archive with ``code/`` members and ``constants.pkl`` (``torch.jit.save``).
  Loaded with ``torch.jit.load``, converted with ``torch._export.converter.TS2EPConverter`` and exported again.
  The input shapes come from ``input_length``, else from the inputs a traced module stored in the archive
  (``traced_inputs.pkl``, read by a restricted unpickler that only rebuilds shapes, so a trace of a model
  with a control input gives that input's shape too), else from an ``input_length`` attribute of the module.
- ``"state_dict"``: a ``torch.save`` file (zip or legacy) that ``torch.load(weights_only=True)`` reads as a
  mapping of names to tensors (also under a checkpoint key such as ``"state_dict"`` or ``"model"``, or with
  a ``module.`` prefix), or a ``.safetensors`` file; needs ``arch="package.module:Class"`` (and
  ``arch_kwargs``). Loaded with a strict ``load_state_dict`` and exported.
- ``"pickle"``: a ``torch.save`` file holding other Python objects (a whole ``nn.Module``): only with
  ``trust=True`` (``torch.load(weights_only=False)``; the classes must be importable), then exported.
- ``"keras"``: a Keras model, an HDF5 file with a ``model_config`` attribute (``model.save("model.h5")`` in
  tf.keras 2 or Keras 3) or a ``.keras`` zip (``config.json`` and ``model.weights.h5``). Read with h5py, no
  TensorFlow: each layer becomes torch ops (:mod:`dnalift.models.files.keras`), a ``Lambda`` layer's code is
  never run (only chrombpnet's logsumexp is recognised), and the module is exported; the length is the
  model's input length.
- ``"module"``: :func:`~dnalift.models.export.from_module` (an in-memory ``nn.Module`` or ``ScriptModule``) or
  :func:`~dnalift.models.export.from_program` (an in-memory ``ExportedProgram``).

Anything else (an empty, text, other HDF5 (a result file, Keras weights without the model), ONNX, other zip, or
unknown binary file; a TensorFlow SavedModel folder; a missing file) raises
:class:`~dnalift.errors.ModelFormatError` naming the file and what was found.

Without ``trust=True`` a pickle is never unpickled (:mod:`dnalift.models.files.pickles`):
:class:`~dnalift.errors.UntrustedModelError` says how to convert the file. This package is the only place in
dnalift that calls ``torch.load``.
"""

import importlib

_LAZY = {name: "dnalift.models.export" for name in ("LoadedModel", "check_input", "export_module", "from_module",
                                                     "from_program", "program_for_module", "unlift")}
_LAZY.update(FORMATS="dnalift.models.loaded", load_model="dnalift.models.files.loaders")


def __getattr__(name):  # lazy: importing one stage (dnalift.models.export) does not load the file readers
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dnalift.models' has no attribute {name!r}")


__all__ = ["LoadedModel", "load_model", "from_module", "from_program", "program_for_module", "check_input",
           "export_module", "unlift", "FORMATS"]
