"""Checks on output paths made before a run writes anything, and the folders a run makes for its outputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from dnalift.errors import OptionError, OutputExistsError, StoreError

__all__ = ["check_output_dir", "check_not_input", "check_not_existing", "OutputFolders"]


def check_output_dir(path: Path, *, argument: str = "output") -> None:
    """Fail early when ``path`` cannot be written: its nearest existing ancestor must be a writable folder."""
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise StoreError(f"cannot write {path}: {probe} is a file, not a directory; choose another output path",
                         argument=argument, path=str(path))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write {path}: no permission to write in {probe}; choose an output directory "
                         f"you can write to", argument=argument, path=str(path))
    if path.is_dir():
        raise StoreError(f"{argument}={str(path)!r} is a directory; give a file name such as {path / 'scores.h5'}",
                         argument=argument, path=str(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(path: Path, inputs: Mapping[str, Path], *, argument: str = "output") -> None:
    """Refuse an output that is one of the input files (even with ``force``: it would destroy the input)."""
    for name, source in inputs.items():
        if _same_file(path, source):
            raise OptionError(f"{argument}={str(path)!r} is the {name} file the run reads; choose another output "
                              f"name (force=True never overwrites an input)", argument=argument, path=str(path),
                              input=name)


def check_not_existing(path: Path, *, force: bool, resume: bool, argument: str = "output") -> None:
    """OutputExistsError when ``path`` exists and neither ``force`` nor ``resume`` is given."""
    if path.exists() and not force and not resume:
        raise OutputExistsError(f"{path} exists; pass force=True to overwrite it or choose another output",
                                argument=argument, path=str(path))


class OutputFolders:
    """Makes the missing folders of an output path and, on :meth:`remove_empty`, removes those it made that
    are still empty (a failed run leaves no empty folder behind)."""

    def __init__(self):
        self.made: list[Path] = []

    def make(self, folder: Path) -> None:
        missing = []
        probe = folder
        while not probe.exists() and probe.parent != probe:
            missing.append(probe)
            probe = probe.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
            self.made.append(d)

    def remove_empty(self) -> None:
        for d in reversed(self.made):
            try:
                d.rmdir()
            except OSError:
                pass
        self.made.clear()


def check_outputs_free(paths, force: bool) -> None:
    """:class:`~dnalift.errors.OutputExistsError` for the first of ``paths`` that exists, unless ``force``."""
    for p in paths:
        if Path(p).exists() and not force:
            raise OutputExistsError(f"{p} exists; pass force=True to overwrite it or choose another prefix/output",
                                    argument="output", path=str(p))
