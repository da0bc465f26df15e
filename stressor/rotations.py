"""Log rotations as real tools perform them, applied to the writer's file.

Each method leaves the writer appending to the file that ``path`` names afterwards,
the way a logger reopens its file after logrotate or its own size-based rotation:

- ``rename-create``: rename ``NAME`` to ``NAME.1`` and create a new ``NAME``.
- ``rename-over``: write a new file beside ``NAME`` and rename it over ``NAME``,
  which unlinks the old file in one atomic step.
- ``chain``: shift ``NAME.1`` to ``NAME.2`` and so on, then rename and create as
  above (Docker's json-file driver with ``max-file`` above 2).
- ``copytruncate``: copy ``NAME`` to ``NAME.1``, then truncate ``NAME`` to zero.
- ``truncate``: truncate ``NAME`` to zero in place.
- ``delete-recreate``: unlink ``NAME`` and create it again.
- ``symlink-swap``: the followed path is a symlink; point it at a new file by
  renaming a new symlink over it, which is atomic.

Every file operation goes through the current backend (``stressor.backends``).
"""

from __future__ import annotations

import os

from stressor.backends import current_backend
from stressor.writers import Writer

ROTATION_METHODS = (
    "rename-create",
    "rename-over",
    "chain",
    "copytruncate",
    "truncate",
    "delete-recreate",
    "symlink-swap",
)

# Rotated files kept by the chain method, like Docker's max-file=3.
CHAIN_KEEP = 3


def _create(path: str) -> None:
    fs = current_backend().os
    fs.close(fs.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))


def _rename_create(writer: Writer, target: str) -> None:
    current_backend().os.replace(target, target + ".1")
    _create(target)
    writer.file_replaced()


def _rename_over(writer: Writer, target: str, number: int) -> None:
    fresh = f"{target}.new{number}"
    _create(fresh)
    current_backend().os.replace(fresh, target)
    writer.file_replaced()


def _chain(writer: Writer, target: str) -> None:
    fs = current_backend().os
    for index in range(CHAIN_KEEP - 1, 0, -1):
        older = f"{target}.{index}"
        if fs.path.exists(older):
            fs.replace(older, f"{target}.{index + 1}")
    _rename_create(writer, target)


def _copytruncate(writer: Writer, target: str) -> None:
    backend = current_backend()
    backend.copyfile(target, target + ".1")
    backend.os.truncate(target, 0)
    writer.file_truncated()


def _truncate(writer: Writer, target: str) -> None:
    current_backend().os.truncate(target, 0)
    writer.file_truncated()


def _delete_recreate(writer: Writer, target: str) -> None:
    current_backend().os.unlink(target)
    _create(target)
    writer.file_replaced()


def _symlink_swap(writer: Writer, target: str, number: int) -> None:
    fs = current_backend().os
    if not fs.path.islink(writer.path):
        raise ValueError(
            f"symlink-swap needs the followed path {writer.path!r} to be a symlink;"
            " set symlink = true in the [writer] table"
        )
    fresh = f"{target}.new{number}"
    _create(fresh)
    temporary = f"{writer.path}.swap"
    fs.symlink(fresh, temporary)
    fs.replace(temporary, writer.path)
    writer.file_replaced()


def rotate(writer: Writer, method: str, number: int = 1) -> None:
    """Rotate the writer's file by ``method``; ``number`` makes new names unique."""
    target = current_backend().os.path.realpath(writer.path)
    if method == "rename-create":
        _rename_create(writer, target)
    elif method == "rename-over":
        _rename_over(writer, target, number)
    elif method == "chain":
        _chain(writer, target)
    elif method == "copytruncate":
        _copytruncate(writer, target)
    elif method == "truncate":
        _truncate(writer, target)
    elif method == "delete-recreate":
        _delete_recreate(writer, target)
    elif method == "symlink-swap":
        _symlink_swap(writer, target, number)
    else:
        choices = ", ".join(ROTATION_METHODS)
        raise ValueError(f"unknown rotation method {method!r}: choose one of {choices}")
