"""One PBX node: its AMI client, live model and typed operations, wired together.

The node follows every event in arrival order through a single subscription
(the model's correctness depends on order), turns frames into typed events,
applies them to the model and hands them to listeners (statistics, agents,
web push). After every (re)connect it rebuilds the model from QueueStatus and
CoreShowChannels, because events lost while the link was down never come back,
and records the calls that ended in the meantime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from callcenter.ami import AMIError, Frame

from .calls import CallRecorder, pbx_time
from .events import PbxEvent, typed_event
from .model import LiveCall, PbxModel
from .operations import ActionSender, PbxOperations

log = logging.getLogger(__name__)

EventListener = Callable[[PbxEvent], None]
ResyncListener = Callable[[], None]

#: Events can arrive in bursts (a queue call is ~150 events); the model's
#: subscription must never drop one, so its queue is deep. If it ever does
#: overflow, the node resynchronises from a snapshot.
MODEL_QUEUE_SIZE = 200_000


class NodeAMI(ActionSender, Protocol):
    def on_event(
        self, pattern: str, handler: Callable[[Frame], Awaitable[None]], *,
        queue_size: int | None = None,
    ) -> object: ...

    def on_connected(self, hook: Callable[[], Awaitable[None]]) -> object: ...


class PbxNode:
    def __init__(
        self,
        name: str,
        ami: NodeAMI,
        *,
        recorder: CallRecorder | None = None,
        guard: Callable[[], None] | None = None,
        model: PbxModel | None = None,
    ) -> None:
        self.name = name
        self.ami = ami
        self.model = model or PbxModel(name)
        self.ops = PbxOperations(ami, guard=guard) if guard else PbxOperations(ami)
        self._recorder = recorder
        self._listeners: list[EventListener] = []
        self._resync_listeners: list[ResyncListener] = []
        self._pending: set[asyncio.Task[None]] = set()
        self.resyncs = 0
        #: Seconds between the PBX stamping the latest event and us handling it (our
        #: wall clock minus its ``Timestamp``): grows when we fall behind the stream.
        self.event_lag: float | None = None
        self.synced = asyncio.Event()
        self.model.on_call_ended(self._call_ended)
        self._subscription = ami.on_event("*", self._on_frame, queue_size=MODEL_QUEUE_SIZE)
        ami.on_connected(self.resync)

    def on_event(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def on_resync(self, listener: ResyncListener) -> None:
        self._resync_listeners.append(listener)

    async def _on_frame(self, frame: Frame) -> None:
        event = typed_event(self.name, frame)
        if event is None:
            return
        if event.timestamp is not None:
            self.event_lag = time.time() - event.timestamp
        self.model.apply(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one listener must not starve the others
                log.exception("PBX event listener failed")

    def _call_ended(self, call: LiveCall) -> None:
        if self._recorder is None:
            return
        task = asyncio.ensure_future(self._record(call))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(self, call: LiveCall) -> None:
        assert self._recorder is not None
        try:
            await self._recorder.call_ended(self.name, call)
        except Exception as exc:  # noqa: BLE001 - logged; the reconcile pass retries nothing
            log.error("could not record a call's end: %s", type(exc).__name__)

    async def resync(self) -> None:
        """Rebuild the model from the PBX's own snapshot (after every login)."""
        try:
            # The PBX's clock at the snapshot (Ping's Timestamp): records that
            # started before it and are not live any more ended unobserved.
            pong = await self.ami.send_action("Ping")
            queue_status = await self.ops.queue_status()
            channels = await self.ops.channels()
        except AMIError as exc:
            log.warning("PBX %s snapshot failed: %s", self.name, type(exc).__name__)
            return
        ended = self.model.reset_from_snapshot(queue_status, channels)
        for call in ended:
            self._call_ended(call)
        stamp = pong.get("Timestamp")
        if self._recorder is not None and stamp:
            live = {
                frame.get("Linkedid") or "" for frame in channels
                if frame.name == "CoreShowChannel"
            }
            try:
                closed = await self._recorder.close_unobserved(
                    self.name, live, pbx_time(float(stamp) - 1.0)  # type: ignore[arg-type]
                )
            except Exception as exc:  # noqa: BLE001 - the next resync tries again
                log.error("could not close unobserved calls: %s", type(exc).__name__)
            else:
                if closed:
                    log.warning("%d call(s) on %s ended while unobserved", closed, self.name)
        self.resyncs += 1
        self.synced.set()
        for listener in self._resync_listeners:
            try:
                listener()
            except Exception:  # noqa: BLE001
                log.exception("resync listener failed")

    async def drain(self) -> None:
        """Wait for pending call-record writes (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
