"""A raw AMI client for tests and benchmarks of the simulator, in step with its VirtualClock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from callcenter.ami.frame import Frame
from callcenter.ami.parser import AMIParser

from .clock import VirtualClock
from .server import SimPBX


class SimClient:
    """A raw AMI client for tests of the simulator, in step with its VirtualClock.

    It registers a quiescence check, so simulated time stands still while
    bytes are in flight between it and the simulator: a test reacting to an
    event does so at the same simulated instant every run.
    """

    def __init__(self, sim: SimPBX) -> None:
        self.sim = sim
        self.frames: list[Frame] = []
        self._parser = AMIParser(expect_banner=True)
        self._read = 0
        self._written = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    async def connect(self) -> SimClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.sim.port)
        clock = self.sim.clock
        if isinstance(clock, VirtualClock):
            clock.quiescent.append(self._quiet)
        self._task = asyncio.ensure_future(self._pump())
        return self

    def _quiet(self) -> bool:
        mine = [
            s
            for s in self.sim.sessions
            if s.remote.endswith(f"/{self.writer.get_extra_info('sockname')[1]}")
        ]
        return all(s.bytes_out == self._read and s.bytes_in == self._written for s in mine)

    async def _pump(self) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                self.closed = True
                self._changed.set()
                return
            self._read += len(data)
            self.frames.extend(self._parser.feed(data))
            self._changed.set()

    def send(self, action: str, **headers: str) -> None:
        lines = [f"Action: {action}\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"]
        data = "".join(lines).encode()
        self._written += len(data)
        self.writer.write(data)

    async def wait_for(
        self, predicate: Callable[[Frame], bool], within: float = 5.0, start: int = 0
    ) -> Frame:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        checked = start
        while True:
            while checked < len(self.frames):
                frame = self.frames[checked]
                checked += 1
                if predicate(frame):
                    return frame
            if self.closed:
                raise ConnectionError("the simulator closed the connection")
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no matching frame")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    async def action(self, action: str, **headers: str) -> Frame:
        """Send an action and return its response (list events are in ``frames``)."""
        action_id = headers.setdefault("ActionID", f"t-{len(self.frames)}-{self._written}")
        mark = len(self.frames)
        self.send(action, **headers)
        return await self.wait_for(
            lambda f: f.kind == "response" and f.action_id == action_id, start=mark
        )

    async def event(self, name: str, start: int = 0, **match: str) -> Frame:
        return await self.wait_for(
            lambda f: (
                f.kind == "event"
                and f.name == name
                and all(f.get(k) == v for k, v in match.items())
            ),
            start=start,
        )

    def events(self, name: str) -> list[Frame]:
        return [f for f in self.frames if f.kind == "event" and f.name == name]

    async def login(
        self, username: str = "lab", secret: str = "labsecret", events: str = "on"
    ) -> Frame:
        return await self.action("Login", Username=username, Secret=secret, Events=events)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.writer.close()
