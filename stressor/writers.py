"""Writers: produce numbered log lines in Docker's json-file format and keep a ledger.

Each line's ``log`` text carries the writer id, a sequence number and the write
time on the run's clock. In the file each line is one JSON object, wrapped here::

    {"log":"stressor w=1 seq=3 t=12.000312\\n","stream":"stdout",
     "time":"2026-12-04T15:47:55.123456Z"}

The checker parses that text back, so loss, duplication, reordering, tearing and
delivery latency are computed from the delivered bytes alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re

import trio

LINE_PATTERN = re.compile(r"^stressor w=(\d+) seq=(\d+) t=([0-9.]+)\n$")


@dataclasses.dataclass(frozen=True, slots=True)
class WrittenLine:
    """One line as the writer wrote it; ``source`` is ``writer`` or the fault that wrote it."""

    writer: int
    seq: int
    written_at: float
    source: str


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedLine:
    """The identity and write time recovered from a delivered line."""

    writer: int
    seq: int
    written_at: float


def format_line(writer: int, seq: int, written_at: float) -> bytes:
    """Return one docker json-file line, newline included."""
    wall = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    record = {
        "log": f"stressor w={writer} seq={seq} t={written_at:.6f}\n",
        "stream": "stdout",
        "time": wall,
    }
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def parse_line(raw: bytes) -> ParsedLine | None:
    """Recover a stressor line from delivered bytes; return None for anything else."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    text = record.get("log") if isinstance(record, dict) else None
    match = LINE_PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return ParsedLine(int(match[1]), int(match[2]), float(match[3]))


class Writer:
    """Append numbered lines to one file with ``O_APPEND``, one ``write(2)`` per line.

    The late writes of the fault injector go through the same writer, so they
    continue its numbering and the checker can tell their order. ``exiting`` is set
    once the writer wrote its last own line; its descriptor stays open for late
    writes, the way Docker's log copier flushes output after the container exited.
    """

    def __init__(self, path: str, writer_id: int = 1) -> None:
        self.path = path
        self.writer_id = writer_id
        self.ledger: list[WrittenLine] = []
        self.exiting = False
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def write_line(self, source: str = "writer") -> WrittenLine:
        """Write the next line now and record it."""
        seq = len(self.ledger) + 1
        now = trio.current_time()
        os.write(self._fd, format_line(self.writer_id, seq, now))
        entry = WrittenLine(self.writer_id, seq, now, source)
        self.ledger.append(entry)
        return entry

    async def write_lines(self, gaps: list[float]) -> None:
        """Write one line per entry of ``gaps``, sleeping that many seconds before each."""
        for gap in gaps:
            if gap > 0:
                await trio.sleep(gap)
            else:
                await trio.lowlevel.checkpoint()
            self.write_line()

    def close(self) -> None:
        """Close the file descriptor; the writer has exited after this."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
