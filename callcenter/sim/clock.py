"""Time for the simulator: real, or scaled so a long scenario runs in seconds.

Everything in the simulator that waits goes through a :class:`Clock`, so a
10-minute queue scenario at ``speed=60`` keeps its event *order* and its
``Timestamp:``/``HoldTime:`` values (virtual seconds) while taking ten real
seconds. Waits are asyncio timers divided by the speed; ``now()`` is the
virtual epoch, so durations the PBX reports stay in simulated seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """What ``call_later`` returns on any clock: something that can be cancelled."""

    def cancel(self) -> None: ...


class Clock:
    """Virtual wall clock running ``speed`` times faster than real time."""

    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._epoch = time.time() if epoch is None else epoch
        self._mono = time.monotonic()

    def now(self) -> float:
        """Seconds since the Unix epoch, in simulated time."""
        return self._epoch + (time.monotonic() - self._mono) * self.speed

    def real(self, seconds: float) -> float:
        """How many real seconds ``seconds`` of simulated time take."""
        return max(0.0, seconds) / self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real(seconds))

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(self.real(seconds), callback)


class RealClock(Clock):
    def __init__(self) -> None:
        super().__init__(1.0)


class _VirtualTimer:
    __slots__ = ("when", "seq", "callback", "cancelled")

    def __init__(self, when: float, seq: int, callback: Callable[[], object]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _VirtualTimer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class VirtualClock(Clock):
    """Discrete-event time: it stands still while anything can run, then jumps to the next timer.

    Deterministic and as fast as the CPU allows, for tests whose AMI client
    runs in the same process. Time only advances when the event loop has
    nothing ready and every ``quiescent`` check agrees (e.g. "every byte the
    simulator wrote has been read by the test client"), so a client that
    reacts to an event always does so at the same simulated instant, however
    loaded the machine is.
    """

    def __init__(self, *, epoch: float | None = None) -> None:
        super().__init__(1.0, epoch=epoch)
        self._now = self._epoch
        self._timers: list[_VirtualTimer] = []
        self._seq = 0
        self.quiescent: list[Callable[[], bool]] = []
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._now

    def real(self, seconds: float) -> float:
        raise RuntimeError("a VirtualClock has no real-time equivalent; use its timers")

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _VirtualTimer:
        self._seq += 1
        timer = _VirtualTimer(self._now + max(0.0, seconds), self._seq, callback)
        heapq.heappush(self._timers, timer)
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        return timer

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        await fut

    def _idle(self, loop: asyncio.AbstractEventLoop) -> bool:
        ready = getattr(loop, "_ready", None)
        if ready:
            return False
        return all(check() for check in self.quiescent)

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while self._timers:
            # Let everything runnable run first. Each loop iteration polls the
            # sockets (select with a zero timeout while we are ready), and
            # loopback writes are readable at once, so two quiet iterations in
            # a row mean nothing is left to happen at this instant.
            stable = 0
            while stable < 2:
                await asyncio.sleep(0)
                stable = stable + 1 if self._idle(loop) else 0
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                return
            when = self._timers[0].when
            self._now = max(self._now, when)
            # every timer due at this instant fires in the order it was set
            while self._timers and self._timers[0].when <= when:
                timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    timer.callback()

    def stop(self) -> None:
        self._timers.clear()
        if self._driver is not None:
            self._driver.cancel()
