"""The checker's classification of delivered lines."""

from __future__ import annotations

import pytest

from stressor.checks import Delivery, check_lines
from stressor.formats import format_line, parse_line
from stressor.writers import WrittenLine


def ledger(count: int) -> list[WrittenLine]:
    return [WrittenLine(1, seq, float(seq), "writer") for seq in range(1, count + 1)]


def delivered(*seqs: int, read_at: float = 100.0) -> list[Delivery]:
    return [Delivery(format_line(1, seq, float(seq)), read_at) for seq in seqs]


def test_format_line_round_trips():
    raw = format_line(3, 17, 12.5)

    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    assert parse_line(raw) is not None
    assert parse_line(raw).writer == 3
    assert parse_line(raw).seq == 17
    assert parse_line(raw).written_at == pytest.approx(12.5)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"log":"hello\\n"}\n', b"[1]\n", b'{"log":5}\n'])
def test_parse_line_rejects_foreign(raw):
    assert parse_line(raw) is None


def test_check_lines_all_delivered():
    check = check_lines(ledger(3), delivered(1, 2, 3), required_before=10.0)

    assert check.read == 3
    assert check.lost == 0
    assert check.duplicated == 0
    assert check.reordered == 0
    assert check.torn == 0
    assert check.latencies == (99.0, 98.0, 97.0)


def test_check_lines_counts_lost():
    check = check_lines(ledger(3), delivered(1, 3), required_before=10.0)

    assert check.lost == 1
    assert check.read == 2


def test_check_lines_ignores_lines_after_finish():
    check = check_lines(ledger(3), delivered(1, 2), required_before=2.5)

    assert check.lost == 0


def test_check_lines_no_loss_when_unfinished():
    check = check_lines(ledger(3), delivered(1), required_before=None)

    assert check.lost == 0


def test_check_lines_counts_duplicate():
    check = check_lines(ledger(2), delivered(1, 2, 2), required_before=10.0)

    assert check.duplicated == 1
    assert check.read == 3
    assert len(check.latencies) == 2


def test_check_lines_counts_reorder():
    check = check_lines(ledger(3), delivered(2, 1, 3), required_before=10.0)

    assert check.reordered == 1
    assert check.lost == 0


def test_check_lines_counts_torn():
    deliveries = delivered(1) + [Delivery(format_line(1, 2, 2.0)[:20] + b"\n", 100.0)]

    check = check_lines(ledger(2), deliveries, required_before=10.0)

    assert check.torn == 1
    assert check.lost == 1


def test_check_lines_unknown_sequence_is_torn():
    check = check_lines(ledger(1), delivered(1, 9), required_before=10.0)

    assert check.torn == 1


def test_check_lines_unseen_generation_indeterminate():
    # Generation 1 lived between two rotations and none of its lines was delivered.
    generations = {(1, 1): 0, (1, 2): 1, (1, 3): 2}

    check = check_lines(ledger(3), delivered(1, 3), required_before=10.0, generation_of=generations)

    assert check.lost == 0
    assert check.indeterminate == 1


def test_check_lines_first_generation_required():
    # The first file is the one the follower opened, so its lines are required.
    generations = {(1, 1): 0, (1, 2): 1, (1, 3): 2}

    check = check_lines(ledger(3), delivered(2, 3), required_before=10.0, generation_of=generations)

    assert check.lost == 1
    assert check.indeterminate == 0


def test_check_lines_last_generation_required():
    generations = {(1, 1): 0, (1, 2): 1, (1, 3): 1}

    check = check_lines(ledger(3), delivered(1, 2), required_before=10.0, generation_of=generations)

    assert check.lost == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"stressor w=1 seq=0 t=1733000000.123.456789\n",
        b"stressor w=1 seq=2 t=.\n",
        b"stressor w=" + b"9" * 5000 + b" seq=1 t=1.000000\n",
        b'{"log": ' + b"[" * 100_000 + b"\n",
    ],
    ids=["two-time-stamps", "dot-time", "huge-writer", "deep-json"],
)
def test_parse_line_malformed_is_none(raw):
    assert parse_line(raw) is None
