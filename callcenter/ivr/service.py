"""The IVR of one PBX node: AsyncAGIStart in, a routed caller out.

Exactly one backend instance runs this for a PBX: the one that owns its AMI
stream. It

* serves every AsyncAGIStart in a task of its own, so no caller waits for
  another;
* first of all replaces her caller ID with her vault token, so no agent phone,
  queue_log or connected-line update can carry her number, then vaults the
  number and runs the menu;
* writes the routing as channel variables and hands her back to the dialplan
  (ASYNCAGI BREAK); if anything fails it still hands her back, on the default
  route, and if even that fails the dialplan's watchdog takes her to the
  fallback queue;
* writes the heartbeat (AstDB, PBX clock) from the same loop that serves
  AsyncAGIStart, so a wedged loop stops the heartbeat and the dialplan stops
  sending new callers into the IVR;
* after a reconnect resumes callers sitting in AsyncAGI with no live session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from callcenter.ami import AGIChannelGone, AMIConnectionError, AMIError, Frame
from callcenter.ami.agi import AGIResult, parse_agi_env
from callcenter.cases.identities import IdentityStore
from callcenter.cases.vault import Vault, VaultEntry
from callcenter.pbx.calls import CallRecorder
from callcenter.pbx.operations import PbxOperations

from .errors import CallerHungUp, IvrError
from .menu import IvrMenu
from .runner import IvrOutcome, MenuRunner
from .session import AGISession

log = logging.getLogger(__name__)


class IvrAMI(Protocol):
    """What the IVR needs from the AMI client."""

    def on_event(self, pattern: str, handler: Callable[[Frame], Awaitable[None]]) -> object: ...

    def on_connected(self, hook: Callable[[], Awaitable[None]]) -> object: ...

    async def send_action(self, action: str, **fields: object) -> Frame: ...

    async def agi(self, channel: str, command: str) -> AGIResult: ...


@dataclass(frozen=True, slots=True)
class HeartbeatSettings:
    family: str = "wpl"
    key: str = "heartbeat"
    interval_s: float = 5.0


@dataclass(slots=True)
class IvrStats:
    sessions_started: int = 0
    sessions_routed: int = 0
    sessions_hung_up: int = 0
    sessions_failed: int = 0
    sessions_resumed: int = 0
    sessions_blocked: int = 0
    heartbeats: int = 0
    heartbeat_failures: int = 0
    #: Seconds from receiving AsyncAGIStart to sending her first AGI command.
    first_command_latency: list[float] = field(default_factory=list)


class _Tick:
    pass


_TICK = _Tick()


class IvrService:
    def __init__(
        self,
        *,
        node: str,
        ami: IvrAMI,
        ops: PbxOperations,
        menu: IvrMenu,
        vault: Vault,
        identities: IdentityStore,
        recorder: CallRecorder,
        heartbeat: HeartbeatSettings | None = None,
        is_blocked: Callable[[int], Awaitable[bool]] | None = None,
        blocked_notice: str = "wpl/bi/blocked-notice",
    ) -> None:
        self.node = node
        self._ami = ami
        self._ops = ops
        self._menu = menu
        self._runner = MenuRunner(menu)
        self._vault = vault
        self._identities = identities
        self._recorder = recorder
        self._heartbeat = heartbeat or HeartbeatSettings()
        #: Callers blocked as abusive (cases.CaseService.is_blocked), if enforced.
        self._is_blocked = is_blocked
        self._blocked_notice = blocked_notice
        self._inbox: asyncio.Queue[Frame | _Tick] = asyncio.Queue()
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._arrivals: dict[str, float] = {}
        self._subscribed = False
        #: Channels found in AsyncAGI after a reconnect: (Linkedid, Uniqueid).
        self._orphans: dict[str, tuple[str, str]] = {}
        self.stats = IvrStats()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; may be called again after :meth:`stop` (ownership regained)."""
        if not self._subscribed:
            self._ami.on_event("AsyncAGIStart", self._received)
            self._ami.on_connected(self._resync)
            self._subscribed = True
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"ivr-{self.node}"),
            asyncio.create_task(self._ticker(), name=f"ivr-heartbeat-{self.node}"),
        ]

    async def stop(self, *, say_goodbye: bool = True) -> None:
        """Stop serving. ``say_goodbye`` deletes the heartbeat so new callers go
        straight to the fallback queue instead of waiting for it to go stale."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if say_goodbye:
            with contextlib.suppress(AMIError, Exception):
                await self._ops.db_del(self._heartbeat.family, self._heartbeat.key)
        sessions = list(self._sessions.values())
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    @property
    def live_sessions(self) -> int:
        return len(self._sessions)

    async def wait_idle(self) -> None:
        """Wait until no caller is in an IVR session of ours (tests, shutdown)."""
        while self._sessions:
            await asyncio.gather(*list(self._sessions.values()), return_exceptions=True)

    # -- the loop ------------------------------------------------------------------

    async def _received(self, frame: Frame) -> None:
        # When it arrived, for the first-command latency statistic.
        self._arrivals[frame.get("Channel") or ""] = time.monotonic()
        self._inbox.put_nowait(frame)

    async def _ticker(self) -> None:
        while True:
            self._inbox.put_nowait(_TICK)
            await asyncio.sleep(self._heartbeat.interval_s)

    async def _serve(self) -> None:
        while True:
            item = await self._inbox.get()
            if isinstance(item, _Tick):
                # A beat only when the loop has caught up, so a backlog of
                # callers waiting for service also stops the heartbeat.
                if self._inbox.empty():
                    self._spawn(self._beat())
                continue
            try:
                channel = item.get("Channel") or ""
                if channel in self._sessions:
                    continue  # a duplicate start (replay after reconnect)
                self._start_session(channel, item)
            except Exception:  # noqa: BLE001 - one bad start must not stop the IVR
                log.exception("could not start an IVR session")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _beat(self) -> None:
        """Write the heartbeat with the PBX's own clock (Ping's Timestamp)."""
        try:
            pong = await self._ami.send_action("Ping")
            stamp = pong.get("Timestamp")
            if not stamp:
                raise IvrError("Ping reply without Timestamp")
            await self._ops.db_put(
                self._heartbeat.family, self._heartbeat.key, str(int(float(stamp)))
            )
            self.stats.heartbeats += 1
        except AMIConnectionError:
            # The link is down: no beat is exactly what the dialplan must see.
            self.stats.heartbeat_failures += 1
            log.debug("heartbeat for %s skipped: AMI link down", self.node)
        except Exception as exc:  # noqa: BLE001 - a missed beat must never stop the loop
            self.stats.heartbeat_failures += 1
            log.warning("heartbeat for %s failed: %s", self.node, type(exc).__name__)

    # -- one caller ------------------------------------------------------------------

    def _start_session(self, channel: str, start: Frame | None, *, resumed: bool = False) -> None:
        task = asyncio.create_task(self._session(channel, start, resumed=resumed))
        self._sessions[channel] = task
        task.add_done_callback(lambda _t, c=channel: self._sessions.pop(c, None))

    async def _session(self, channel: str, start: Frame | None, *, resumed: bool) -> None:
        self.stats.sessions_started += 1
        session = AGISession(channel, self._ami.agi)
        linkedid = uniqueid = ""
        try:
            if start is not None:
                linkedid = start.get("Linkedid") or ""
                uniqueid = start.get("Uniqueid") or ""
                # Her number leaves the frame only towards the vault.
                entry = self._vault.admit_caller_id(
                    parse_agi_env(start.get("Env") or "").get("agi_callerid")
                )
            else:
                linkedid, uniqueid, entry = await self._identify_orphan(channel)
            await session.set_caller_label(entry.token.code)
            arrived = self._arrivals.pop(channel, None)
            if arrived is not None:
                self.stats.first_command_latency.append(time.monotonic() - arrived)
            await session.set_variable("WPL_TOKEN", entry.token.code)
            identity_id = None
            blocked = False
            if self._is_blocked is not None and not entry.withheld:
                identity_id = await self._identities.remember(entry)
                blocked = await self._is_blocked(identity_id)
            self._spawn(self._record_start(linkedid, uniqueid, entry, start, identity_id))
            if blocked:
                self.stats.sessions_blocked += 1
                blocked_outcome = await self._runner.run_blocked(session)
                if blocked_outcome is None:
                    await session.stream_file(self._blocked_notice)
                    await session.hangup()
                    return
                outcome = blocked_outcome
            else:
                outcome = await self._runner.run(session)
            await self._hand_back(session, outcome)
            self.stats.sessions_routed += 1
            self._spawn(self._record_outcome(linkedid, outcome))
        except (CallerHungUp, AGIChannelGone):
            self.stats.sessions_hung_up += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - she must be put through whatever failed
            self.stats.sessions_failed += 1
            log.warning("IVR session failed (%s); releasing the caller", type(exc).__name__)
            await self._release(session)
        finally:
            self._arrivals.pop(channel, None)

    async def _hand_back(self, session: AGISession, outcome: IvrOutcome) -> None:
        for name, value in outcome.channel_variables().items():
            await session.set_variable(name, value)
        await session.hand_back()

    async def _release(self, session: AGISession) -> None:
        """Put her on the default route; the dialplan's watchdog is the last resort."""
        route = self._menu.routes[self._menu.default_route]
        language = self._menu.settings.default_language
        outcome = IvrOutcome(
            route=self._menu.default_route, queue=route.queue_for(language),
            priority=route.priority, category=route.category, risk=route.risk,
            language=language, flags=(*route.flags, "ivr-error"), callback_ok=False,
            queue_timeout=route.queue_timeout, defaulted=True,
        )
        with contextlib.suppress(Exception):
            await self._hand_back(session, outcome)

    async def _record_start(
        self,
        linkedid: str,
        uniqueid: str,
        entry: VaultEntry,
        start: Frame | None,
        identity_id: int | None = None,
    ) -> None:
        try:
            if identity_id is None:
                identity_id = await self._identities.remember(entry)
            stamp = start.get("Timestamp") if start is not None else None
            await self._recorder.ivr_started(
                self.node, linkedid, caller_uniqueid=uniqueid, identity_id=identity_id,
                token=entry.token.code, at=float(stamp) if stamp else None,
            )
        except Exception as exc:  # noqa: BLE001 - the call goes on; the end is recorded too
            log.error("could not record the IVR start: %s", type(exc).__name__)

    async def _record_outcome(self, linkedid: str, outcome: IvrOutcome) -> None:
        try:
            await self._recorder.ivr_finished(
                self.node, linkedid, ivr_path=outcome.path_text()[:1024], route=outcome.route,
                category=outcome.category, language=outcome.language, queue=outcome.queue,
                priority=outcome.priority, risk=outcome.risk, flags=",".join(outcome.flags),
                callback_ok=outcome.callback_ok, reference_entered=outcome.reference,
            )
        except Exception as exc:  # noqa: BLE001
            log.error("could not record the IVR outcome: %s", type(exc).__name__)

    # -- after a reconnect ---------------------------------------------------------------

    async def _resync(self) -> None:
        """Resume callers left in AsyncAGI without a session (we restarted or
        took over from a dead owner): their menu starts again from the top."""
        try:
            channels = await self._ops.channels()
        except AMIError as exc:
            log.warning("could not list channels after reconnect: %s", type(exc).__name__)
            return
        for item in channels:
            if item.name != "CoreShowChannel" or (item.get("Application") or "") != "AGI":
                continue
            channel = item.get("Channel") or ""
            if channel and channel not in self._sessions:
                self.stats.sessions_resumed += 1
                self._orphans[channel] = (item.get("Linkedid") or "", item.get("Uniqueid") or "")
                self._start_session(channel, None, resumed=True)

    async def _identify_orphan(self, channel: str) -> tuple[str, str, VaultEntry]:
        linkedid, uniqueid = self._orphans.pop(channel, ("", ""))
        # Her caller ID is either still her number (we died before replacing it)
        # or already her token; only a number gives a vault entry that links.
        raw = await self._ops.get_variable(channel, "CALLERID(num)")
        return linkedid, uniqueid, self._vault.admit_caller_id(raw)
