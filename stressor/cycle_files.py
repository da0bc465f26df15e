"""The layout of a cycle's files, and their removal at the cycle's end.

Most followers get a directory of their own per cycle: ``DIR/TARGET-N/app.log``,
with rotated files beside it. A follower shared between cycles (a long-lived
program watching one directory) gets ``SHARED/cycle-N.log`` instead, its rotated
files ``cycle-N.log.1`` and so on, so that every file of cycle N starts with
``SHARED/cycle-N.``. In symlink mode the followed path is a symlink to
``app.log`` in a directory of the cycle's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat

from stressor.backends import Backend

# A file's identity: (st_ino, st_dev).
FileId = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class CycleFiles:
    """The followed path of one cycle and how to remove everything the cycle created.

    Attributes:
        path: the followed path; the file exists and is empty.
        prefix: every path the cycle creates starts with it.
    """

    backend: Backend
    path: str
    prefix: str
    # A directory that holds only this cycle's files, or None in a shared directory.
    own_directory: str | None

    def identities(self) -> set[FileId]:
        """Return (st_ino, st_dev) of every regular file of the cycle that exists now."""
        return {identity for entry in self._entries() for identity in self._identities(entry)}

    def remove(self) -> None:
        """Remove every file of the cycle; safe to call again."""
        if self.own_directory is not None:
            self.backend.rmtree(self.own_directory)
            return
        fs = self.backend.os
        for entry in self._entries():
            try:
                is_directory = stat.S_ISDIR(fs.lstat(entry).st_mode)
            except FileNotFoundError:
                continue
            if is_directory:
                self.backend.rmtree(entry)
            else:
                with contextlib.suppress(FileNotFoundError):
                    fs.unlink(entry)

    def _entries(self) -> list[str]:
        """Return the top-level paths of the cycle: its own directory, or its shared entries."""
        if self.own_directory is not None:
            return [self.own_directory]
        directory, start = os.path.split(self.prefix)
        try:
            names = self.backend.os.listdir(directory)
        except FileNotFoundError:
            return []
        return [os.path.join(directory, name) for name in names if name.startswith(start)]

    def _identities(self, top: str) -> set[FileId]:
        """Return the identities of the regular files at or below ``top``."""
        fs = self.backend.os
        found = set()
        pending = [top]
        while pending:
            path = pending.pop()
            try:
                info = fs.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                try:
                    pending.extend(os.path.join(path, name) for name in fs.listdir(path))
                except OSError:
                    continue
            elif stat.S_ISREG(info.st_mode):
                found.add((info.st_ino, info.st_dev))
        return found


def prepare_files(
    backend: Backend, directory: str, name: str, cycle: int, symlink: bool, shared: str | None
) -> CycleFiles:
    """Create cycle ``cycle``'s empty log file (behind a symlink in symlink mode).

    Args:
        directory: the run's directory, where the cycle's own directory goes.
        name: the target's name.
        shared: the shared directory of a shared follower, or None.
    """
    fs = backend.os
    if shared is None:
        own = os.path.join(directory, f"{name}-{cycle}")
        fs.mkdir(own, 0o700)
        files = CycleFiles(backend, os.path.join(own, "app.log"), own + os.sep, own)
    else:
        prefix = os.path.join(shared, f"cycle-{cycle}.")
        files = CycleFiles(backend, prefix + "log", prefix, None)
    try:
        real = files.path
        if symlink:
            target_directory = files.prefix + "d" if shared else os.path.join(own, "target")
            fs.mkdir(target_directory, 0o700)
            real = os.path.join(target_directory, "app.log")
            fs.symlink(real, files.path)
        fs.close(fs.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    except BaseException:
        files.remove()
        raise
    return files
