"""Source lines of a TorchScript model, carried over to the graph ``TS2EPConverter`` makes of it (torch only).

A TorchScript file keeps, for each node of its graph, the source it came from (``node.sourceRange()``), unless
it was saved without its debug files: for a trace, the Python call stack at the time of tracing
(``/path/model.py(12): forward``, innermost frame first); for a scripted module, the function's file, line and
code with the expression marked (``File "/path/model.py", line 12`` ... ``~~~ <--- HERE``). ``TS2EPConverter``
drops it (a file saved without its debug records has only the TorchScript code stored in the archive,
``code/__torch__/...``, which a refusal shows as such). :func:`keep_source_lines` wraps the conversion so that every graph node made from a TorchScript node
gets that source as its ``stack_trace``, in Python's traceback form, which :func:`dnalift.graph.source_line`
reads and which survives exporting the graph again; so a refusal names the model's line as for other formats.
"""

from __future__ import annotations

import contextlib
import re

__all__ = ["ARCHIVE_CODE", "stack_trace_of", "keep_source_lines"]

#: the function name given to a frame of the TorchScript code stored in the archive (``code/__torch__/...``),
#: which is all a file saved without its debug records has: not the model's source
ARCHIVE_CODE = "<archive>"

_TRACED_FRAME = re.compile(r"^(.+?)\((\d+)\): (\S+)$")
_SCRIPTED_FILE = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_MARKER = "<--- HERE"


def stack_trace_of(source_range: str) -> str | None:
    """A TorchScript node's source range as a Python stack trace (outermost frame first), or None.

    Parameters
    ----------
    source_range : str
        ``str(node.sourceRange())``. The part after ``Serialized`` (the TorchScript code stored in the
        archive, not the model's own) is not used.

    Returns
    -------
    str or None
        ``File "path", line N, in function`` lines, each followed by its code (empty for a trace, which
        records no code; the function is :data:`ARCHIVE_CODE` for the archive's own TorchScript code, all a
        file without debug records has); None when the range holds no frame.
    """
    original = source_range.split("Serialized", 1)[0]
    lines = original.splitlines()
    traced = [m.groups() for m in (_TRACED_FRAME.match(line.strip()) for line in lines) if m]
    if traced:
        return "".join(f'File "{path}", line {line}, in {fn}\n    \n' for path, line, fn in reversed(traced))
    frames = []
    for i, line in enumerate(lines):
        m = _SCRIPTED_FILE.match(line)
        if m is None:
            continue
        code = ""
        for j in range(i + 1, len(lines)):
            if _SCRIPTED_FILE.match(lines[j]):
                break
            if _MARKER in lines[j] and j > i + 1:
                code = lines[j - 1].strip()
                break
        function = ARCHIVE_CODE if m.group(1).startswith("code/") else "<script>"
        frames.append(f'File "{m.group(1)}", line {m.group(2)}, in {function}\n    {code}\n')
    return "".join(frames) or None


@contextlib.contextmanager
def keep_source_lines():
    """While active, ``TS2EPConverter`` gives each graph node it makes the ``stack_trace`` of its TorchScript
    node (where the file carries one). A no-op on a torch whose converter has no ``convert_node``."""
    from torch._export import converter

    cls = getattr(converter, "TS2FXGraphConverter", None)
    original = getattr(cls, "convert_node", None)
    if original is None:
        yield
        return

    def convert_node(self, node):
        before = len(self.fx_graph.nodes)
        original(self, node)
        made = len(self.fx_graph.nodes) - before
        trace = stack_trace_of(str(node.sourceRange())) if made > 0 else None
        if trace is None:
            return
        for fx_node, _ in zip(reversed(self.fx_graph.nodes), range(made)):
            if fx_node.op == "call_function" and not fx_node.meta.get("stack_trace"):
                fx_node.meta["stack_trace"] = trace

    cls.convert_node = convert_node
    try:
        yield
    finally:
        cls.convert_node = original
