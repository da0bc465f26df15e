"""Go channel semantics on trio: unbuffered hand-over and a fair, non-consuming select."""

from __future__ import annotations

import collections
import random

import trio

from stressor.gochan import Always, Channel, Signal, select


async def test_unbuffered_send_blocks_until_received():
    channel: Channel[int] = Channel(0)
    sent = trio.Event()

    async def sender() -> None:
        await channel.send(1)
        sent.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            assert channel.ready()
            assert await channel.receive() == 1
    assert sent.is_set()


async def test_select_waits_without_consuming():
    channel: Channel[int] = Channel(0)
    signal = Signal()
    rng = random.Random(0)

    async def close_later() -> None:
        await trio.testing.wait_all_tasks_blocked()
        signal.close()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_later)
            index, value = await select([channel, signal], rng)

    assert index == 1
    assert value is None
    assert not channel.ready()


async def test_select_wakes_on_blocked_sender():
    channel: Channel[str] = Channel(0)
    rng = random.Random(0)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.send, "event")
            index, value = await select([channel, Signal()], rng)

    assert (index, value) == (0, "event")


async def test_select_picks_ready_cases_evenly():
    signal = Signal()
    signal.close()
    rng = random.Random(1)
    counts = collections.Counter()
    for _ in range(2000):
        index, _ = await select([Always(), signal], rng)
        counts[index] += 1

    assert 850 < counts[0] < 1150
    assert 850 < counts[1] < 1150


async def test_select_is_replayable_from_seed():
    signal = Signal()
    signal.close()

    async def choices(seed: int) -> list[int]:
        rng = random.Random(seed)
        return [(await select([Always(), signal], rng))[0] for _ in range(50)]

    assert await choices(7) == await choices(7)
