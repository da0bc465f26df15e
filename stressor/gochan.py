"""Go channel semantics on trio: unbuffered hand-over and a fair ``select``.

The Docker follow loops and the 2016 fsnotify watcher hang or not because of two
Go rules, so the models need both exactly:

- A send on an unbuffered channel (a trio memory channel of size 0) blocks until a
  receiver takes the value.
- ``select`` waits until at least one case is ready, then picks one of the ready
  cases uniformly at random. Waiting never consumes a value.

``select`` checks readiness and takes the chosen value in one step with no
checkpoint in between, so no other task can change the state it saw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Case:
    """Base of everything a ``select`` can wait on; keeps the parked selects to wake."""

    def __init__(self) -> None:
        # A dict, not a set: parked selects are woken in the order they parked,
        # not in an order of object addresses, so an exact replay repeats it.
        self._selects: dict[trio.lowlevel.ParkingLot, None] = {}

    def ready(self) -> bool:
        """Tell whether ``take`` would complete now."""
        raise NotImplementedError

    def take(self) -> object:
        """Complete the case without blocking and return the received value."""
        raise NotImplementedError

    def _wake_selects(self) -> None:
        for lot in list(self._selects):
            lot.unpark_all()


class Channel(Case, Generic[T]):
    """A Go channel of the given capacity, backed by a trio memory channel."""

    def __init__(self, capacity: int = 0) -> None:
        super().__init__()
        self._send_end, self._receive_end = trio.open_memory_channel[T](capacity)

    async def send(self, value: T) -> None:
        """Send ``value``, blocking until a receiver or a buffer slot takes it."""
        try:
            self._send_end.send_nowait(value)
        except trio.WouldBlock:
            # Wake the parked selects first: they only run after this task has
            # parked inside send(), because send() reaches its park without a
            # checkpoint, so they see this sender as waiting.
            self._wake_selects()
            await self._send_end.send(value)
        else:
            self._wake_selects()
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> T:
        """Receive one value, blocking until a sender offers one."""
        return await self._receive_end.receive()

    def ready(self) -> bool:
        """Tell whether a receive would complete without blocking."""
        stats = self._receive_end.statistics()
        return stats.current_buffer_used > 0 or stats.tasks_waiting_send > 0

    def take(self) -> T:
        """Receive a value that ``ready`` promised; raise ``trio.WouldBlock`` otherwise."""
        return self._receive_end.receive_nowait()


class Signal(Case):
    """A channel that is only ever closed, Go's ``done`` idiom: ready forever once closed."""

    def __init__(self) -> None:
        super().__init__()
        self._event = trio.Event()

    def close(self) -> None:
        """Close the signal; closing twice is allowed, unlike in Go, to keep cleanup simple."""
        self._event.set()
        self._wake_selects()

    def is_closed(self) -> bool:
        """Tell whether ``close`` was called."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Block until the signal is closed."""
        await self._event.wait()

    def ready(self) -> bool:
        """Tell whether a receive would complete, which is once the signal is closed."""
        return self._event.is_set()

    def take(self) -> None:
        """Receive from the closed signal, which yields nothing."""
        return None


class Always(Case):
    """A case that is always ready, such as a send on a channel with room in its buffer."""

    def ready(self) -> bool:
        """Return True: the case never blocks."""
        return True

    def take(self) -> None:
        """Complete the case, which yields nothing."""
        return None


async def select(cases: Sequence[Case], rng: random.Random) -> tuple[int, object]:
    """Wait for a case to be ready, pick one ready case at random and complete it.

    Args:
        cases: the channels and signals to receive from.
        rng: the random source for the choice, seeded per cycle so a run replays.

    Returns:
        The index of the chosen case and the value it received.
    """
    while True:
        ready = [index for index, case in enumerate(cases) if case.ready()]
        if ready:
            index = ready[0] if len(ready) == 1 else rng.choice(ready)
            value = cases[index].take()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return index, value

        lot = trio.lowlevel.ParkingLot()
        for case in cases:
            case._selects[lot] = None
        try:
            await lot.park()
        finally:
            for case in cases:
                case._selects.pop(lot, None)
