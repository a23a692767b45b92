"""TorchScript refusals name the model's source line (issue 19): the trace's call stack or the scripted function's
marked line, kept through the conversion to a torch.export graph; a file saved without its debug records says
that it has none."""

from __future__ import annotations

import inspect
import zipfile

import pytest
import torch
import torch.nn as nn

from dnalift.attribution.engine import describe
from dnalift.errors import UnsupportedOpError
from dnalift.models import load_model
from dnalift.models.script_source import stack_trace_of

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class WithErf(nn.Module):
    """conv -> erf (no DeepLIFT rule) -> sum."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3)

    def forward(self, x):
        h = self.conv(x)
        h = torch.erf(h)  # the refused line
        return h.sum(dim=(1, 2)).unsqueeze(1)


ERF_LINE = next(i for i, line in enumerate(inspect.getsource(WithErf).splitlines())
                if "the refused line" in line) + inspect.getsourcelines(WithErf)[1]


def refusal(path) -> str:
    model = load_model(path, input_length=12)
    with pytest.raises(UnsupportedOpError) as info:
        describe(model)
    (op,) = info.value.ops
    assert op.op == "erf"
    return op.source


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_refusal_names_the_models_line(tmp_path, how):
    module = WithErf().eval()
    ts = torch.jit.trace(module, torch.zeros(2, 4, 12)) if how == "trace" else torch.jit.script(module)
    ts.save(str(tmp_path / "m.pt"))
    source = refusal(tmp_path / "m.pt")
    here = __file__.rsplit("/", 1)[-1]
    if how == "trace":  # a trace records the call stack, not the code
        assert source == f"{here}:{ERF_LINE}, in forward"
    else:
        assert source == f"{here}:{ERF_LINE}: h = torch.erf(h)  # the refused line"


def test_torchscript_without_debug_records_says_it_has_no_source_line(tmp_path):
    torch.jit.script(WithErf().eval()).save(str(tmp_path / "full.pt"))
    with zipfile.ZipFile(tmp_path / "full.pt") as full, zipfile.ZipFile(tmp_path / "bare.pt", "w") as bare:
        for item in full.infolist():
            if not item.filename.endswith(".debug_pkl"):
                bare.writestr(item, full.read(item.filename))
    source = refusal(tmp_path / "bare.pt")
    assert source.startswith("graph node erf (the model file records no source line for it; its TorchScript code: "
                             "code/__torch__/")
    assert source.endswith(".py:11: h0 = torch.erf(h))")


def test_stack_trace_of_a_traced_and_a_scripted_range():
    traced = ("/torch/nn/modules/conv.py(380): _conv_forward\n/home/u/model.py(6): forward\n"
              "/torch/jit/_trace.py(1022): trace\n/home/u/run.py(12): <module>\n"
              'Serialized   File "code/__torch__.py", line 14\n    x = torch.relu(x)\n')
    assert stack_trace_of(traced) == (
        'File "/home/u/run.py", line 12, in <module>\n    \nFile "/torch/jit/_trace.py", line 1022, in trace\n    \n'
        'File "/home/u/model.py", line 6, in forward\n    \n'
        'File "/torch/nn/modules/conv.py", line 380, in _conv_forward\n    \n')
    scripted = ('  File "/home/u/model.py", line 7\n    def forward(self, x):\n        return torch.erf(x)\n'
                '               ~~~~~~~~~ <--- HERE\nSerialized   File "code/__torch__.py", line 9\n')
    assert stack_trace_of(scripted) == 'File "/home/u/model.py", line 7, in <script>\n    return torch.erf(x)\n'
    assert stack_trace_of("") is None
    assert stack_trace_of('Serialized   File "code/__torch__.py", line 9\n  x\n  ~ <--- HERE') is None
    archive = '  File "code/__torch__/m.py", line 9\n    y = torch.erf(x)\n        ~~~~ <--- HERE\n'
    assert stack_trace_of(archive) == 'File "code/__torch__/m.py", line 9, in <archive>\n    y = torch.erf(x)\n'
