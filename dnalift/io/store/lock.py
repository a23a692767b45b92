"""A lock on an output name, so that two runs never write (or delete) the same output at once.

The lock is an exclusive ``flock`` on ``.<name>.lock`` beside the output (:func:`schema.lock_path`), held
for the whole run. The operating system releases it when the process ends, however it ends (``kill -9``
included), so a stale lock file never blocks a later run. The file holds the pid of its owner, for the
message of the run that finds it locked. On release the owner removes the file while it still holds the
lock; a run that locked a file that was removed meanwhile retries with the new one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dnalift.errors import OutputInUseError
from dnalift.io.store import schema

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not protected from each other
    fcntl = None

__all__ = ["OutputLock"]

logger = logging.getLogger(__name__)


class OutputLock:
    """Exclusive lock on the output ``path`` (use as a context manager, or :meth:`acquire` / :meth:`release`).

    Parameters
    ----------
    path : path
        The output file (the lock file is ``.<name>.lock`` beside it; its folder must exist).

    Raises
    ------
    OutputInUseError
        From :meth:`acquire`: another process holds the lock.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.lock_file = schema.lock_path(self.path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "OutputLock":
        if self._fd is not None or fcntl is None:
            return self
        for _ in range(10):
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                who = f" (process {pid})" if pid else ""
                raise OutputInUseError(
                    f"{self.path} is being written by another dnalift run{who}; wait for it to finish, or "
                    f"choose another output", argument="output", path=str(self.path), lock=str(self.lock_file),
                    pid=pid) from None
            except OSError:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)  # the owner removed it while we waited: lock the new one
        raise OutputInUseError(f"{self.path}: cannot take the lock {self.lock_file}; another run keeps replacing it",
                               argument="output", path=str(self.path), lock=str(self.lock_file), pid=None)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.lock_file)
        except OSError:
            logger.debug("cannot remove %s", self.lock_file, exc_info=True)
        os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
