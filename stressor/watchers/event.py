"""The event a watcher hands to its follower, shaped like fsnotify's ``Event``."""

from __future__ import annotations

import dataclasses
import enum

from stressor.watchers import inotify


class Op(enum.Flag):
    """What happened to a watched path, in fsnotify's vocabulary."""

    CREATE = enum.auto()
    WRITE = enum.auto()
    REMOVE = enum.auto()
    RENAME = enum.auto()
    CHMOD = enum.auto()


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change to ``path``; ``mask`` keeps the inotify bits it came from (0 for polling).

    For a watched directory, ``name`` is the entry inside it that changed.
    """

    path: str
    op: Op
    mask: int = 0
    name: str = ""


def op_from_mask(mask: int) -> Op:
    """Map inotify mask bits to fsnotify operations the way fsnotify v1.2 to v1.4 did."""
    op = Op(0)
    if mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
        op |= Op.CREATE
    if mask & (inotify.IN_DELETE_SELF | inotify.IN_DELETE):
        op |= Op.REMOVE
    if mask & inotify.IN_MODIFY:
        op |= Op.WRITE
    if mask & (inotify.IN_MOVE_SELF | inotify.IN_MOVED_FROM):
        op |= Op.RENAME
    if mask & inotify.IN_ATTRIB:
        op |= Op.CHMOD
    return op
