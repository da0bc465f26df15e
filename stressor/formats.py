"""Line formats the writers produce and the checker parses back.

Every format carries the same payload, ``stressor w=WRITER seq=SEQ t=TIME``, so
loss, duplication, reordering and latency are found the same way in each:

- ``docker-json``: Docker's json-file driver, one JSON object per line.
- ``cri``: the Kubernetes CRI log format, ``TIMESTAMP STREAM F PAYLOAD``.
- ``plain``: the payload alone.

The wall-clock time stamps of ``docker-json`` and ``cri`` come from the current
backend, so lines written on fake files are the same in every replay.
"""

from __future__ import annotations

import dataclasses
import json
import re

from stressor.backends import current_backend

FORMATS = ("docker-json", "cri", "plain")

# Bounded digit counts, so that a torn or made-up line cannot overflow int() or float().
_PAYLOAD = re.compile(r"stressor w=(\d{1,18}) seq=(\d{1,18}) t=(\d{1,15}\.\d{6})")
# The start of every payload, also of a torn one, with the writer's number.
_PAYLOAD_START = re.compile(rb"stressor w=(\d{1,18})")
_CRI = re.compile(rb"^(\S+) (stdout|stderr) ([FP]) (.*)\n$", re.DOTALL)


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedLine:
    """The identity and write time recovered from a delivered line."""

    writer: int
    seq: int
    written_at: float


def _now() -> str:
    return current_backend().utc_now().isoformat().replace("+00:00", "Z")


def format_line(
    writer: int, seq: int, written_at: float, line_format: str = "docker-json"
) -> bytes:
    """Return one line in ``line_format``, newline included."""
    payload = f"stressor w={writer} seq={seq} t={written_at:.6f}"
    if line_format == "docker-json":
        record = {"log": payload + "\n", "stream": "stdout", "time": _now()}
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"
    if line_format == "cri":
        return f"{_now()} stdout F {payload}\n".encode()
    if line_format == "plain":
        return f"{payload}\n".encode()
    raise ValueError(f"unknown line format {line_format!r}: choose one of {', '.join(FORMATS)}")


def _payload_text(raw: bytes) -> str | None:
    """Return the payload of a docker-json, CRI or plain line, or None."""
    if raw.startswith(b"{"):
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            return None  # RecursionError: JSON nested deeper than the parser allows
        text = record.get("log") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.endswith("\n"):
            return None
        return text[:-1]
    match = _CRI.match(raw)
    if match is not None:
        return match[4].decode(errors="replace") if match[3] == b"F" else None
    if not raw.endswith(b"\n"):
        return None
    return raw[:-1].decode(errors="replace")


def payload_writer(raw: bytes) -> int | None:
    """Return the writer number of a line that starts a stressor payload, even a torn one."""
    match = _PAYLOAD_START.search(raw)
    return int(match[1]) if match is not None else None


def parse_line(raw: bytes) -> ParsedLine | None:
    """Recover a stressor line from delivered bytes in any format; None for anything else."""
    text = _payload_text(raw)
    match = _PAYLOAD.fullmatch(text) if text is not None else None
    if match is None:
        return None
    return ParsedLine(int(match[1]), int(match[2]), float(match[3]))
