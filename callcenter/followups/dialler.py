"""Placing a task's call on the PBX, and settling one whose worker died (AMI side).

:class:`AmiDialler` places a callback the safe way round: AMI ``Originate`` of
``Local/s@wpl-callback`` (that half queues in ``wpl-callback`` for a free agent), and only
once an agent has answered does the other half (``wpl-callback-dial``) dial her. Her
number travels as the channel variable ``WPL_CALLBACK_DEST``, never as ``Exten`` (CDR
``dst``) nor caller ID; the agent's phone shows her token. The Originate's ``Timeout``
covers the queue wait, so a Failure ``OriginateResponse`` means no agent took it and she
was never dialled: a retry, not "no answer". The dialplan's ``h`` extension reports how
the call to her went (``WPL_CALLRESULT=<task>:<fence>:<DIALSTATUS>``).

:class:`AmiCallSettler` is the scheduler's :class:`~callcenter.followups.scheduler.CallSettler`
on a real PBX. For a task stranded in ``dialling`` it

1. writes the settling claim's fence to AstDB ``wpl_task/<id>``: the dialplan refuses any
   Originate of this task with a lower fence before it rings anyone (a stale Originate still
   in a socket buffer dies there);
2. lists live channels (``CoreShowChannels``) and reads ``WPL_TASK_ID`` (``Getvar``) of the
   callback channels among them: one of this task means the call is on (``LIVE``);
3. reads AstDB ``wpl_call/<id>``, which the dialplan writes right after a call passed the
   fence check: present means a call was placed and ended (``PLACED``), absent means none
   passed and none can any more (``NOT_PLACED``).

Why that order is enough: a call that passed the check before step 1 is either still up at
step 2, or ended, and then its mark (written just after the check) is there by step 3. A
call reaching the check after step 1 is refused. The dialler deletes the mark before each
Originate, so a mark left by an earlier attempt of the task is not taken for this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from callcenter.ami import AMIActionError, AMIClient, AMIError, Frame
from callcenter.pbx.errors import PbxOperationError
from callcenter.pbx.operations import PbxOperations

from .scheduler import TASK_VARIABLE, Settlement, TaskContext

log = logging.getLogger(__name__)

#: AstDB family of the settlers' fences (``wpl_task/<task id>`` = fence).
FENCE_FAMILY = "wpl_task"
#: AstDB family of the dialplan's "a call of this task passed the fence" marks.
MARK_FAMILY = "wpl_call"
#: The variable the dialplan's ``h`` extension reports the result in.
RESULT_VARIABLE = "WPL_CALLRESULT"
CALLBACK_CHANNEL = "Local/s@wpl-callback"
CALLBACK_CONTEXTS = frozenset({"wpl-callback", "wpl-callback-dial"})


class DialResult(enum.StrEnum):
    """How one attempt of a callback went, in the helpline's words."""

    REACHED = "reached"  # she answered and was bridged with the agent
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    UNREACHABLE = "unreachable"  # congestion, switched off, carrier refused
    #: No agent took the callback within the queue wait: she was never dialled.
    AGENT_TIMEOUT = "agent_timeout"
    #: The agent hung up while her phone rang.
    AGENT_LEFT = "agent_left"
    #: The agent hung up before her number was dialled: she was never called.
    NOT_DIALLED = "not_dialled"


NOT_CALLED = frozenset({DialResult.AGENT_TIMEOUT, DialResult.NOT_DIALLED})

_BY_DIALSTATUS = {
    "ANSWER": DialResult.REACHED,
    "NOANSWER": DialResult.NO_ANSWER,
    "BUSY": DialResult.BUSY,
    "CONGESTION": DialResult.UNREACHABLE,
    "CHANUNAVAIL": DialResult.UNREACHABLE,
    "CANCEL": DialResult.AGENT_LEFT,
    "NODIAL": DialResult.NOT_DIALLED,
}


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """One call to her. ``destination`` is her number, decrypted just now; it goes into the
    Originate frame and nowhere else (no log, no repr)."""

    destination: str
    #: What the agent's phone and console show instead of her number.
    token: str
    callback_id: int
    #: Why she is called (abandoned_queue, abandoned_ivr, followup): the console shows it
    #: among the call's flags (the dialplan sets ``WPL_FLAGS=callback,<reason>``).
    reason: str = "callback"
    category: str | None = None
    language: str | None = None
    presented_number: str = "0000000000"
    queue_wait_s: int = 120
    ring_s: int = 45
    queue_priority: int = 0

    def __repr__(self) -> str:
        return f"OutboundCall(callback_id={self.callback_id}, token={self.token!r})"


class CallGone(AMIError):
    """The AMI link dropped while the call was on: only settlement can say how it went."""


def _no_guard() -> None:
    return None


class AmiDialler:
    """Places callback calls over one PBX's AMI client; one per PBX node."""

    def __init__(
        self,
        client: AMIClient,
        *,
        ops: PbxOperations | None = None,
        guard: Callable[[], None] = _no_guard,
        #: The longest a call to her may last once placed (talk time included).
        max_call_s: float = 4 * 3600.0,
    ) -> None:
        self._client = client
        self._ops = ops or PbxOperations(client, guard=guard)
        self._guard = guard
        self._max_call_s = max_call_s
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._ids = itertools.count(1)
        self._started = False

    def start(self) -> None:
        """Follow the dialplan's result variable (call before the first :meth:`place`)."""
        if self._started:
            return
        self._started = True
        self._client.on_event("VarSet", self._on_varset)
        self._client.on_disconnected(self._on_disconnected)

    def _on_varset(self, frame: Frame) -> None:
        if frame.get("Variable") != RESULT_VARIABLE:
            return
        tag, _, status = (frame.get("Value") or "").rpartition(":")
        waiter = self._waiters.get(tag)
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    async def _on_disconnected(self) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(CallGone("AMI link lost during a callback"))

    async def place(self, ctx: TaskContext, call: OutboundCall) -> DialResult:
        """Place ``call`` for the claim ``ctx``; returns once the call to her is over.

        Raises :class:`~callcenter.followups.errors.LeaseLost` (nothing sent) when the claim
        is no longer current; any other exception after ``before_call`` leaves the outcome
        to settlement.
        """
        self.start()
        self._guard()
        variables = await ctx.before_call()
        tag = variables[TASK_VARIABLE]
        # A mark from an earlier attempt must not count as this attempt's call.
        await self._ops.db_del(MARK_FAMILY, str(ctx.task_id))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[str] = loop.create_future()
        self._waiters[tag] = waiter
        try:
            response = await self._client.originate(
                ActionID=f"wpl-task-{ctx.task_id}-{ctx.fence}-{next(self._ids)}",
                Channel=CALLBACK_CHANNEL,
                Context="wpl-callback-dial",
                Exten="s",
                Priority=1,
                # The agent's phone and console show her token (a label the model keeps);
                # the number part is a dummy, never hers.
                CallerID=f'"{call.token}" <0>',
                Timeout=(call.queue_wait_s + 5) * 1000,
                Variable=[
                    *(f"{k}={v}" for k, v in variables.items()),
                    f"WPL_TASK={ctx.task_id}",
                    f"WPL_FENCE={ctx.fence}",
                    f"WPL_CALLBACK={call.callback_id}",
                    # Not WPL_FLAGS itself: Originate splits Variable values at commas.
                    f"WPL_CALLBACK_REASON={call.reason}",
                    *([f"WPL_CATEGORY={call.category}"] if call.category else []),
                    *([f"WPL_LANGUAGE={call.language}"] if call.language else []),
                    f"WPL_QUEUE_TIMEOUT={call.queue_wait_s}",
                    f"WPL_QUEUE_PRIO={call.queue_priority}",
                    f"WPL_RING_SECONDS={call.ring_s}",
                    f"WPL_CALLBACK_CLI={call.presented_number}",
                    f"WPL_CALLBACK_DEST={call.destination}",
                ],
                timeout=call.queue_wait_s + 30.0,
            )
            if response.get("Response") != "Success":
                # The Local channel was never answered: no agent came, and the half
                # that dials her never ran.
                return DialResult.AGENT_TIMEOUT
            async with asyncio.timeout(self._max_call_s):
                status = await waiter
        finally:
            self._waiters.pop(tag, None)
        return _BY_DIALSTATUS.get(status.upper(), DialResult.UNREACHABLE)


    async def forget(self, task_id: int) -> bool:
        """Delete a finished task's mark and fence from AstDB (one key each, never the
        family); True when both are gone. Call only once the task's final state is
        committed: until then a settler may need them."""
        key = str(task_id)
        gone = True
        for family in (MARK_FAMILY, FENCE_FAMILY):
            try:
                await self._ops.db_del(family, key)
            except Exception as exc:  # noqa: BLE001 - best effort: the sweep tries again
                gone = False
                log.warning("task %s: AstDB %s key not deleted: %s", task_id, family,
                            type(exc).__name__)
        return gone


class AmiCallSettler:
    """The scheduler's settler on a real PBX (see the module docstring for the reasoning)."""

    def __init__(self, ops: PbxOperations) -> None:
        self._ops = ops

    async def settle(self, task_id: int, fence: int) -> Settlement:
        key = str(task_id)
        await self._ops.db_put(FENCE_FAMILY, key, str(fence))
        if await self._live(task_id):
            return Settlement.LIVE
        mark = await self._ops.db_get(MARK_FAMILY, key)
        return Settlement.PLACED if mark else Settlement.NOT_PLACED

    async def _live(self, task_id: int) -> bool:
        prefix = f"{task_id}:"
        for frame in await self._ops.channels():
            channel = frame.get("Channel") or ""
            if not (
                channel.startswith(CALLBACK_CHANNEL) or frame.get("Context") in CALLBACK_CONTEXTS
            ):
                continue
            with contextlib.suppress(PbxOperationError, AMIActionError):
                # A channel that hung up meanwhile answers "No such channel": not live.
                value = await self._ops.get_variable(channel, TASK_VARIABLE)
                if value is not None and value.startswith(prefix):
                    return True
        return False
