"""The writer: appends numbered lines to the followed file and keeps a ledger of them.

The ledger is what the checker compares deliveries with. Besides the lines it
records which lines a follower cannot be blamed for missing: lines that a
truncation removed before the follower may have read them (``at_risk``),
partial lines that were never completed (``incomplete``), and the file
generation of every line: each rotation that replaces the file starts a new
generation, so the checker can tell a file that was rotated away before any
follower could open it.
"""

from __future__ import annotations

import dataclasses
import os

import trio

from stressor.backends import current_backend
from stressor.formats import format_line

Key = tuple[int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class WrittenLine:
    """One line as the writer wrote it; ``source`` is ``writer`` or the fault that wrote it."""

    writer: int
    seq: int
    written_at: float
    source: str

    @property
    def key(self) -> Key:
        """Return (writer, seq), the line's identity."""
        return (self.writer, self.seq)


@dataclasses.dataclass
class _Partial:
    """A line whose first part was written; the rest goes to the same descriptor."""

    seq: int
    fd: int
    rest: bytes
    fragment: bytes
    source: str
    generation: int


class Writer:
    """Append lines to ``path`` with ``O_APPEND``, one ``write(2)`` per line.

    The late writes and rotations of the fault injector go through the same
    writer, so lines keep one numbering and the checker can tell their order.
    ``exiting`` is set once the writer wrote its last own line. Its descriptor stays
    open for late writes, the way Docker's log copier flushes output after the
    container exited. Its files are those of the backend current when it is built.
    """

    def __init__(self, path: str, writer_id: int = 1, line_format: str = "docker-json") -> None:
        self.path = path
        self.writer_id = writer_id
        self.line_format = line_format
        self.ledger: list[WrittenLine] = []
        self.at_risk: set[Key] = set()
        self.incomplete: dict[Key, bytes] = {}
        self.generation_of: dict[Key, int] = {}
        self.generation = 0
        self.exiting = False
        self._seq = 0
        self._in_file: list[Key] = []
        self._partial: _Partial | None = None
        self._os = current_backend().os
        self._fd = self._open()

    def _open(self) -> int:
        return self._os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _record(self, seq: int, source: str, generation: int | None = None) -> WrittenLine:
        entry = WrittenLine(self.writer_id, seq, trio.current_time(), source)
        self.ledger.append(entry)
        self._in_file.append(entry.key)
        self.generation_of[entry.key] = self.generation if generation is None else generation
        return entry

    def write_line(self, source: str = "writer") -> WrittenLine:
        """Complete a pending partial line, then write the next line now and record it."""
        self.complete_partial()
        seq = self._next_seq()
        line = format_line(self.writer_id, seq, trio.current_time(), self.line_format)
        self._os.write(self._fd, line)
        return self._record(seq, source)

    def write_partial(self, source: str) -> None:
        """Write the first half of the next line, without its newline."""
        self.complete_partial()
        seq = self._next_seq()
        line = format_line(self.writer_id, seq, trio.current_time(), self.line_format)
        cut = len(line) // 2
        self._os.write(self._fd, line[:cut])
        fd = self._os.dup(self._fd)
        self._partial = _Partial(seq, fd, line[cut:], line[:cut], source, self.generation)
        self.incomplete[(self.writer_id, seq)] = line[:cut]

    def complete_partial(self) -> None:
        """Write the rest of a pending partial line to the descriptor it started on."""
        partial, self._partial = self._partial, None
        if partial is None:
            return
        try:
            self._os.write(partial.fd, partial.rest)
        finally:
            self._os.close(partial.fd)
        del self.incomplete[(self.writer_id, partial.seq)]
        self._record(partial.seq, partial.source, partial.generation)

    def abandon_partial(self) -> None:
        """Drop a pending partial line; it stays incomplete, as when its writer died."""
        partial, self._partial = self._partial, None
        if partial is not None:
            self._os.close(partial.fd)

    async def write_lines(self, gaps: list[float]) -> None:
        """Write one line per entry of ``gaps``, sleeping that many seconds before each."""
        for gap in gaps:
            if gap > 0:
                await trio.sleep(gap)
            else:
                await trio.lowlevel.checkpoint()
            self.write_line()

    def file_truncated(self) -> None:
        """Record that the followed file was truncated: its unread lines are at risk."""
        self.abandon_partial()
        self.at_risk.update(self._in_file)
        self._in_file = []

    def file_replaced(self) -> None:
        """Reopen ``path`` after a rotation replaced the file behind it."""
        self._os.close(self._fd)
        self._fd = -1
        self._fd = self._open()
        self._in_file = []
        self.generation += 1

    def close(self) -> None:
        """Close the descriptors; the writer has exited after this."""
        self.abandon_partial()
        if self._fd >= 0:
            self._os.close(self._fd)
            self._fd = -1
