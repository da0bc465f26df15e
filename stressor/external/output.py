"""Split an external follower's output into stressor's lines and everything else.

Real programs print more than the followed lines: ``tail`` prints ``==> NAME <==``
headers and blank lines when it follows several files or a file reappears, and
programs log their own text. Only lines that carry a stressor payload are handed
on, and the others are counted. The last few lines of any kind are kept as the
hang evidence's "last output".
"""

from __future__ import annotations

import collections
import secrets

from stressor.formats import parse_line, payload_writer

# Lines of output kept for the evidence of a hang.
LAST_LINES = 5
# Bytes of a line kept before its newline; longer lines are dropped and counted ignored.
MAX_LINE_BYTES = 1024 * 1024
# Bytes of each line shown in that evidence; the rest of a longer line is cut.
_SHOWN_BYTES = 200


class OutputParser:
    """Turn chunks of output into complete stressor lines, keeping partial lines.

    A chunk may end in the middle of a line. That fragment waits for the rest of its
    stream (one TCP connection, say), so a line is never handed on torn by a pipe's
    chunking, nor joined to another connection's line.
    """

    def __init__(self) -> None:
        # A line that no writer writes: once the program prints it, it has printed
        # everything appended to the file before it.
        self.marker = f"stressor-end-marker {secrets.token_hex(8)}\n".encode()
        self.marker_seen = False
        self._pending: dict[int, bytes] = {}
        # Streams in the middle of a line too long to keep, dropped up to its newline.
        self._discarding: set[int] = set()
        self.ignored = 0
        self.lines_seen = 0
        self.last = collections.deque[bytes](maxlen=LAST_LINES)

    def feed(self, chunk: bytes, stream: int = 0) -> list[bytes]:
        """Return the stressor lines completed by ``chunk`` of ``stream``, newline included."""
        return self.split(chunk, stream)[0]

    def split(self, chunk: bytes, stream: int = 0) -> tuple[list[bytes], list[bytes]]:
        """Return the stressor lines and the other lines completed by ``chunk`` of ``stream``.

        The other lines are counted as ignored; the caller may still look for end
        markers among them.
        """
        if stream in self._discarding:
            newline = chunk.find(b"\n")
            if newline < 0:
                return [], []
            chunk = chunk[newline + 1 :]
            self._discarding.discard(stream)
        data = self._pending.pop(stream, b"") + chunk
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        if len(rest) > MAX_LINE_BYTES:
            # No stressor line is this long: drop it up to its newline, so that a
            # program that never ends a line cannot fill memory.
            self.ignored += 1
            self.last.append(rest[:_SHOWN_BYTES] + b"...")
            self._discarding.add(stream)
        elif rest:
            self._pending[stream] = rest
        found = []
        others = []
        for line in data[:end].splitlines(keepends=True):
            self.lines_seen += 1
            self.last.append(line)
            if self.marker in line:
                self.marker_seen = True
            # A line with a torn payload is handed on too: the checker counts it torn.
            if parse_line(line) is not None or payload_writer(line) is not None:
                found.append(line)
            else:
                self.ignored += 1
                others.append(line)
        return found, others

    def finish(self, stream: int | None = None) -> None:
        """Count a fragment left at the end of ``stream`` (default: all) as ignored.

        Such a fragment never completed, so no follower delivered it.
        """
        streams = list(self._pending) if stream is None else [stream]
        for key in streams:
            fragment = self._pending.pop(key, b"")
            if fragment:
                self.last.append(fragment)
                self.ignored += 1

    def describe_last(self) -> str:
        """Return the last lines of output, for evidence."""
        if not self.last:
            return "none"
        shown = [repr(line[:_SHOWN_BYTES]) for line in self.last]
        return " | ".join(shown)
