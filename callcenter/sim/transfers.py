"""Transfers as Asterisk 22 makes them: AMI BlindTransfer, Atxfer and CancelAtxfer.

Read from the Asterisk source:

* ``main/manager.c``: ``BlindTransfer`` calls ``ast_bridge_transfer_blind()``
  and answers "Transfer succeeded" / "Transfer invalid" / "Transfer failed";
  ``Atxfer`` needs ``[featuremap] atxfer`` (no default code: "No attended
  transfer feature code found"), sets ``TRANSFER_CONTEXT`` and *queues the
  feature code and the extension as DTMF* on the transferer's channel, then
  answers "Atxfer successfully queued" whatever happens next; ``CancelAtxfer``
  queues the ``atxferabort`` code the same way. Digits on a channel whose bridge
  gives it no transfer feature (Queue/Dial without ``t``) are only DTMF.
* ``main/bridge.c`` (blind): the transferer leaves the bridge, the transferee
  gets ``BLINDTRANSFER`` and goes on in the dialplan at Context/Exten, and a
  ``BlindTransfer`` event (Result, Transferer*, Transferee*, Bridge*,
  IsExternal, Context, Extension) is published; app_queue ends the agent's leg
  with ``AgentComplete`` ``Reason: transfer``.
* ``main/bridge_basic.c`` (attended): the transferer's bridge is put on hold
  (``Hold`` for the transferer, the caller's phone starts music on hold), a
  ``Local/<exten>@<context>`` channel is requested (``TRANSFERERNAME``,
  ``ATTENDEDTRANSFER`` set on it) and imparted into a new target bridge, and the
  transferer is moved there. Then the state machine:
  calling target -- target answers --> consulting;
  target hangs up, no answer within ``atxfernoanswertimeout`` or the abort code
  --> rebridge (the transferer goes back to the caller, ``Unhold``, music stops,
  ``AttendedTransfer`` ``Result: Fail``);
  transferer hangs up or the complete code while consulting --> complete (the
  target bridge merges into the caller's, the transferer is kicked, music
  stops, ``AttendedTransfer`` ``Result: Success`` ``DestType: Bridge``);
  transferer hangs up while the target still rings --> blond: with
  ``atxferdropcall=no`` (the default) the caller is merged with the ringing
  target and, if it does not answer, the transferer is called back
  (``atxfercallbackretries``, ``atxferloopdelay``); the three-way code merges all
  three parties (``DestType: Threeway``).

Approximations:

* The extension digits are taken at once; Asterisk waits up to
  ``transferdigittimeout`` when a longer extension could still match.
* The swap feature (``atxferswap``) and the hesitant / double-checking states
  are not modelled; only the transferer's own DTMF (AMI CancelAtxfer, or
  :meth:`PBXCore.send_dtmf` from her phone) is matched against feature codes,
  and only while she is the transferer of an attended transfer.
* Local channels are never optimised away: the caller stays bridged with
  ``Local/...;1`` while ``;2`` is bridged with the target's phone (Asterisk
  would emit LocalOptimizationBegin/End and swap the channels).
* A blind transfer of a bridge with more than two parties (Asterisk moves the
  whole bridge through a Local channel) answers "Transfer failed".
* When the caller hangs up while the target still rings, the transfer fails
  (``Result: Fail``) and the transferer stays with the ringing target, as an
  ordinary call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .channels import DOWN, RING, UP, Bridge, Channel

if TYPE_CHECKING:
    from .core import PBXCore

SUCCESS, INVALID, FAIL = "Success", "Invalid", "Fail"

# stimuli of bridge_basic.c's attended transfer monitor
TRANSFEREE_HANGUP = "transferee hangup"
TRANSFERER_HANGUP = "transferer hangup"
TARGET_HANGUP = "target hangup"
TARGET_ANSWER = "target answer"
TIMEOUT = "timeout"
DTMF_ABORT = "dtmf abort"
DTMF_COMPLETE = "dtmf complete"
DTMF_THREEWAY = "dtmf threeway"
DTMF_SWAP = "dtmf swap"


@dataclass
class LocalPair:
    """``Local/exten@context-XXXXXXXX;1`` and ``;2`` (core_local.c)."""

    one: Channel
    two: Channel


class Transfers:
    """The PBX's transfer features; one per :class:`PBXCore`."""

    def __init__(self, core: PBXCore) -> None:
        self.core = core
        #: attended transfers under way, by transferer channel name.
        self.under_way: dict[str, AttendedTransfer] = {}

    # -- blind ------------------------------------------------------------------------

    def blind(self, transferer: Channel, exten: str, context: str) -> str:
        """ast_bridge_transfer_blind(): returns Success, Invalid or Fail."""
        core = self.core
        bridge = transferer.bridge
        if bridge is None or transferer.soft_hangup or transferer.transfer is not None:
            self._publish_blind(INVALID, transferer, None, None, context, exten)
            return INVALID
        others = [c for c in bridge.channels if c is not transferer]
        if len(others) != 1 or bridge.watcher is not None:
            self._publish_blind(FAIL, transferer, None, bridge, context, exten)
            return FAIL
        transferee = others[0]
        core.set_var(transferee, "BLINDTRANSFER", transferer.name)
        core.bridge_leave(bridge, transferer)
        self._publish_blind(SUCCESS, transferer, transferee, bridge, context, exten)
        core.end_leg(transferer, transferer, "transfer")
        if transferer.pbx_task is None:
            if not transferer.gone:
                core.destroy(transferer, 16)
        else:
            core.request_hangup(transferer)
        core.redirect(transferee, (context, exten, 1))
        return SUCCESS

    def _publish_blind(
        self,
        result: str,
        transferer: Channel,
        transferee: Channel | None,
        bridge: Bridge | None,
        context: str,
        exten: str,
    ) -> None:
        headers = [("Result", result), *transferer.snapshot("Transferer")]
        if transferee is not None:
            headers += transferee.snapshot("Transferee")
        if bridge is not None:
            headers += bridge.headers()
        headers += [("IsExternal", "No"), ("Context", context), ("Extension", exten)]
        self.core.emit("BlindTransfer", "call,all", headers)

    # -- attended -------------------------------------------------------------------------

    def context_for(self, transferer: Channel, context: str | None) -> str:
        """get_transfer_context(): the given one, TRANSFER_CONTEXT, the channel's, default."""
        return (
            context
            or transferer.variables.get("TRANSFER_CONTEXT")
            or transferer.context
            or "default"
        )

    def attended(self, transferer: Channel, exten: str) -> AttendedTransfer | None:
        """The atxfer DTMF feature fired on ``transferer`` with ``exten`` as the digits."""
        core = self.core
        bridge = transferer.bridge
        if (
            bridge is None
            or not transferer.can_transfer
            or transferer.transfer is not None
            or transferer.soft_hangup
        ):
            return None
        context = self.context_for(transferer, None)
        held = [c for c in bridge.channels if c is not transferer]
        self.hold(transferer, held)
        if not core.dialplan.exists(context, exten, 1):
            # "pbx-invalid": back to the caller, nothing else happens
            self.unhold(transferer, held)
            return None
        xfer = AttendedTransfer(self, transferer, bridge, held, exten, context)
        xfer.start()
        return xfer

    def hold(self, transferer: Channel, held: list[Channel]) -> None:
        """ast_bridge_channel_write_hold(): Hold for her, music on hold for the others."""
        core = self.core
        core.chan_event("Hold", transferer)
        for chan in held:
            if not chan.gone:
                core.chan_event("MusicOnHoldStart", chan, [("Class", "default")])

    def unhold(self, transferer: Channel | None, held: list[Channel]) -> None:
        core = self.core
        if transferer is not None and not transferer.gone:
            core.chan_event("Unhold", transferer)
        for chan in held:
            if not chan.gone:
                core.chan_event("MusicOnHoldStop", chan)

    def request_local(self, exten: str, context: str, requester: Channel) -> LocalPair:
        """dial_transfer(): a Local channel to exten@context carrying the transferer's id."""
        core = self.core
        base = f"Local/{exten}@{context}-{next(core._local_seq):08x}"
        halves = []
        for half, state in ((1, DOWN), (2, RING)):
            halves.append(
                core.new_channel(
                    "Local",
                    f"{exten}@{context}",
                    state=state,
                    caller_num=requester.caller_num,
                    caller_name=requester.caller_name,
                    context=context,
                    exten=exten,
                    name=f"{base};{half}",
                    linkedid=requester.linkedid,
                )
            )
        one, two = halves
        one.local_peer, two.local_peer = two, one
        one.local_half, two.local_half = 1, 2
        core.set_var(one, "TRANSFERERNAME", requester.name)
        core.set_var(one, "ATTENDEDTRANSFER", requester.name)
        core.emit(
            "LocalBridge",
            "call,all",
            [
                *one.snapshot("LocalOne"),
                *two.snapshot("LocalTwo"),
                ("Context", context),
                ("Exten", exten),
                ("LocalOptimization", "Yes"),
            ],
        )
        core.start_pbx(two)
        core.spawn(self._answer_through(one, two))
        return LocalPair(one, two)

    async def _answer_through(self, one: Channel, two: Channel) -> None:
        """;1 is answered when the dialplan on ;2 answers (its Dial connected)."""
        done = asyncio.ensure_future(two.answered_event.wait())
        gone = asyncio.ensure_future(one.gone_event.wait())
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            gone.cancel()
        if two.answered_event.is_set() and not one.gone and one.state != UP:
            self.core.set_state(one, UP)

    # -- DTMF features ----------------------------------------------------------------------

    def queue_digits(self, chan: Channel, digits: str) -> None:
        """ast_queue_frame(DTMF): the digits reach the bridge as if her phone sent them."""
        core = self.core
        for digit in digits:
            core.chan_event(
                "DTMFBegin", chan, [("Digit", digit), ("Direction", "Received")], "dtmf,all"
            )
            core.chan_event(
                "DTMFEnd",
                chan,
                [("Digit", digit), ("DurationMs", "100"), ("Direction", "Received")],
                "dtmf,all",
            )
            self.on_digit(chan, digit)

    def on_digit(self, chan: Channel, digit: str) -> None:
        """Match the transferer's DTMF against the attended transfer's feature codes."""
        xfer = chan.transfer
        if not isinstance(xfer, AttendedTransfer):
            chan.feature_digits = ""
            return
        f = self.core.config.features
        codes = {
            f.atxferabort: DTMF_ABORT,
            f.atxfercomplete: DTMF_COMPLETE,
            f.atxferthreeway: DTMF_THREEWAY,
            f.atxferswap: DTMF_SWAP,
        }
        codes.pop("", None)
        typed = chan.feature_digits + digit
        longer = [code for code in codes if code.startswith(typed) and code != typed]
        if typed in codes and not longer:
            chan.feature_digits = ""
            xfer.stimulate(codes[typed])
        elif longer:
            chan.feature_digits = typed
        else:
            chan.feature_digits = ""


class AttendedTransfer:
    """One attended transfer: bridge_basic.c's monitor thread and its states."""

    def __init__(
        self,
        engine: Transfers,
        transferer: Channel,
        transferee_bridge: Bridge,
        held: list[Channel],
        exten: str,
        context: str,
    ) -> None:
        self.engine = engine
        self.core = engine.core
        self.transferer = transferer
        self.transferee_bridge = transferee_bridge
        self.held = held
        self.exten = exten
        self.context = context
        self.target_bridge: Bridge | None = None
        self.target: LocalPair | None = None
        self.recall: Channel | None = None
        self.state = "calling target"
        self.transferee_gone = False
        self.stimuli: asyncio.Queue[str] = asyncio.Queue()
        self.task: asyncio.Task[object] | None = None

    # -- set up -----------------------------------------------------------------------------

    def start(self) -> None:
        core = self.core
        a = self.transferer
        self.target = self.engine.request_local(self.exten, self.context, a)
        self.target_bridge = core.new_bridge()
        core.bridge_enter(self.target_bridge, self.target.one)
        core.bridge_leave(self.transferee_bridge, a)
        core.bridge_enter(self.target_bridge, a)
        a.transfer = self
        self.engine.under_way[a.name] = self
        self.target_bridge.watcher = self._target_bridge_hangup
        self.transferee_bridge.watcher = self._transferee_bridge_hangup
        core.on_hangup.append(self._maybe_transferee_gone)
        self.task = core.spawn(self.run())

    def stimulate(self, stimulus: str) -> None:
        self.stimuli.put_nowait(stimulus)

    def _target_bridge_hangup(self, chan: Channel) -> None:
        if chan is self.transferer:
            self.stimulate(TRANSFERER_HANGUP)
        elif self.target is not None and chan is self.target.one:
            self.stimulate(TARGET_HANGUP)

    def _transferee_bridge_hangup(self, chan: Channel) -> None:
        if chan in self.held:
            self.stimulate(TRANSFEREE_HANGUP)
        elif self.target is not None and chan is self.target.one:
            self.stimulate(TARGET_HANGUP)
        elif chan is self.recall:
            self.stimulate(TARGET_HANGUP)

    def _maybe_transferee_gone(self, chan: Channel) -> None:
        if chan in self.held and all(c.gone for c in self.held):
            self.stimulate(TRANSFEREE_HANGUP)

    # -- the monitor ----------------------------------------------------------------------

    async def run(self) -> None:
        core = self.core
        features = core.config.features
        assert self.target is not None
        answered = core.spawn(self._report_answer(self.target))
        timer = core.clock.call_later(
            features.atxfernoanswertimeout, lambda: self.stimulate(TIMEOUT)
        )
        try:
            while True:
                stimulus = await self.stimuli.get()
                if stimulus == TRANSFEREE_HANGUP:
                    self.transferee_gone = True
                next_state = self._next(stimulus)
                if next_state is None:
                    continue
                if next_state == "consulting":
                    self.state = next_state
                    timer.cancel()
                    continue
                timer.cancel()
                await self._finish(next_state)
                return
        finally:
            timer.cancel()
            answered.cancel()
            self._shutdown()

    async def _report_answer(self, pair: LocalPair) -> None:
        await pair.two.answered_event.wait()
        # the ;1 half follows (LocalPair's own task) before the monitor looks
        await asyncio.sleep(0)
        self.stimulate(TARGET_ANSWER)

    def _next(self, stimulus: str) -> str | None:
        dropcall = self.core.config.features.atxferdropcall
        if self.state == "calling target":
            return {
                TRANSFEREE_HANGUP: "fail",
                TRANSFERER_HANGUP: "blond" if dropcall else "blond nonfinal",
                DTMF_COMPLETE: "blond" if dropcall else "blond nonfinal",
                TARGET_ANSWER: "consulting",
                TARGET_HANGUP: "rebridge",
                TIMEOUT: "rebridge",
                DTMF_ABORT: "rebridge",
                DTMF_THREEWAY: "threeway",
            }.get(stimulus)
        # consulting: the caller hanging up changes nothing until the transferer acts
        return {
            TRANSFERER_HANGUP: "complete",
            DTMF_COMPLETE: "complete",
            TARGET_HANGUP: "rebridge",
            DTMF_ABORT: "rebridge",
            DTMF_THREEWAY: "threeway",
        }.get(stimulus)

    async def _finish(self, state: str) -> None:
        self.state = state
        if state == "complete":
            self._complete()
        elif state == "rebridge":
            self._rebridge()
        elif state == "threeway":
            self._threeway()
        elif state == "fail":
            self._fail()
        elif state == "blond":
            self._blond()
        elif state == "blond nonfinal":
            self._blond()
            await self._recall()

    def _caller_bridge_alive(self) -> bool:
        bridge = self.transferee_bridge
        return not bridge.destroyed and any(not c.soft_hangup for c in bridge.channels)

    def _kick_transferer(self) -> None:
        """The transferer leaves for good: her leg ends as a transfer and she hangs up."""
        core = self.core
        a = self.transferer
        core.end_leg(a, a, "transfer")
        if a.bridge is not None:
            core.bridge_leave(a.bridge, a)
        if not a.gone:
            if a.pbx_task is None:
                core.destroy(a, 16)
            else:
                core.request_hangup(a)

    def _merge_target_into_caller(self, kick: Channel | None) -> None:
        core = self.core
        assert self.target_bridge is not None
        caller_bridge = self.transferee_bridge
        core.bridge_merge(caller_bridge, self.target_bridge, kick)
        for chan in caller_bridge.channels:
            if chan is not caller_bridge.owner:
                chan.bridge_owner = caller_bridge.owner

    def _complete(self) -> None:
        core = self.core
        assert self.target_bridge is not None and self.target is not None
        if not self._caller_bridge_alive():
            # nobody left to hand over: the consultation simply ends
            self._publish(FAIL, "Fail")
            self._kick_transferer()
            self._hang_up_target()
            return
        self._merge_target_into_caller(self.transferer)
        self.engine.unhold(None, self.held)
        self._publish(SUCCESS, "Bridge")
        self._kick_transferer()
        core.bridge_destroy(self.target_bridge)

    def _blond(self) -> None:
        """The transferer hung up (or completed) while the target still rings."""
        core = self.core
        assert self.target_bridge is not None
        if not self._caller_bridge_alive():
            self._fail()
            return
        self._merge_target_into_caller(self.transferer)
        # the caller hears the target ring instead of music
        self.engine.unhold(None, self.held)
        self._publish(SUCCESS, "Bridge")
        self._kick_transferer()
        core.bridge_destroy(self.target_bridge)

    def _rebridge(self) -> None:
        core = self.core
        a = self.transferer
        assert self.target_bridge is not None
        core.bridge_leave(self.target_bridge, a)
        if self._caller_bridge_alive():
            core.bridge_enter(self.transferee_bridge, a)
            a.bridge_owner = self.transferee_bridge.owner
            self.engine.unhold(a, self.held)
            self._publish(FAIL, "Fail")
        else:
            self._publish(FAIL, "Fail")
            self._kick_transferer()
        self._hang_up_target()

    def _threeway(self) -> None:
        core = self.core
        assert self.target_bridge is not None
        if not self._caller_bridge_alive():
            self._fail()
            return
        self._merge_target_into_caller(None)
        self.engine.unhold(None, self.held)
        self._publish(SUCCESS, "Threeway")
        core.bridge_destroy(self.target_bridge)

    def _fail(self) -> None:
        """The caller is gone: the transferer stays with the target as an ordinary call."""
        assert self.target_bridge is not None
        self._publish(FAIL, "Fail")
        self.core.watch_plain(self.target_bridge)
        self.target_bridge = None

    def _hang_up_target(self) -> None:
        core = self.core
        bridge = self.target_bridge
        if bridge is None:
            return
        for chan in list(bridge.channels):
            core.bridge_leave(bridge, chan)
            if not chan.gone:
                core.destroy(chan, 16)
        core.bridge_destroy(bridge)

    # -- recall (atxferdropcall=no) -------------------------------------------------------

    async def _recall(self) -> None:
        """Blond non-final: ring the target; if nobody answers, call the transferer back."""
        core = self.core
        features = core.config.features
        assert self.target is not None
        self.state = "blond nonfinal"
        if await self._await_answer(self.target.one, features.atxfernoanswertimeout):
            return
        attempts = 0
        while True:
            self.state = "recalling"
            if await self._ring_transferer_back(features.atxfernoanswertimeout):
                return
            attempts += 1
            if attempts > features.atxfercallbackretries or self.transferee_gone:
                self._recall_failed()
                return
            if features.atxferloopdelay:
                self.state = "wait to retransfer"
                if not await self._music_for(features.atxferloopdelay):
                    return
            self.state = "retransfer"
            pair = self.engine.request_local(self.exten, self.context, self.transferer)
            core.bridge_enter(self.transferee_bridge, pair.one)
            pair.one.bridge_owner = self.transferee_bridge.owner
            self.recall = pair.one
            if await self._await_answer(pair.one, features.atxfernoanswertimeout):
                return
            if features.atxferloopdelay:
                self.state = "wait to recall"
                if not await self._music_for(features.atxferloopdelay):
                    return

    async def _await_answer(self, chan: Channel, seconds: float) -> bool:
        """Until ``chan`` (ringing in the caller's bridge) answers; False: drop it."""
        core = self.core
        deadline = core.clock.now() + seconds
        while not self.transferee_gone:
            if chan.state == UP and not chan.soft_hangup:
                self.transferee_bridge.watcher = None
                self.state = "resume"
                return True
            if chan.soft_hangup or chan.gone:
                break
            if deadline - core.clock.now() <= 0:
                break
            await self._wait_stimulus()
        # drop the unanswered party from the caller's bridge
        if chan.bridge is self.transferee_bridge:
            core.bridge_leave(self.transferee_bridge, chan)
        if not chan.gone:
            core.destroy(chan, 16)
        return False

    async def _wait_stimulus(self) -> str:
        """The next stimulus, or a tick after a simulated second (deadlines are polled)."""
        core = self.core
        handle = core.clock.call_later(1.0, lambda: self.stimulate("tick"))
        try:
            stimulus = await self.stimuli.get()
        finally:
            handle.cancel()
        if stimulus == TRANSFEREE_HANGUP:
            self.transferee_gone = True
        return stimulus

    async def _ring_transferer_back(self, seconds: float) -> bool:
        core = self.core
        status, chan = await core.dial(
            None,
            self.transferer.dialed,
            ring_for=seconds,
            app="AppDial2",
            dialstring=self.transferer.dialed,
        )
        if status != "ANSWER" or chan is None:
            return False
        if self.transferee_gone or not self._caller_bridge_alive():
            core.destroy(chan, 16)
            return True
        self.recall = chan
        core.bridge_enter(self.transferee_bridge, chan)
        chan.bridge_owner = self.transferee_bridge.owner
        self.transferee_bridge.watcher = None
        self.state = "resume"
        return True

    async def _music_for(self, seconds: float) -> bool:
        core = self.core
        for chan in self.held:
            if not chan.gone:
                core.chan_event("MusicOnHoldStart", chan, [("Class", "default")])
        await core.clock.sleep(seconds)
        for chan in self.held:
            if not chan.gone:
                core.chan_event("MusicOnHoldStop", chan)
        return not self.transferee_gone

    def _recall_failed(self) -> None:
        """TRANSFER_FAIL in the recall superstate: the caller's bridge is destroyed."""
        core = self.core
        self._publish(FAIL, "Fail")
        for chan in list(self.transferee_bridge.channels):
            if not chan.soft_hangup:
                core.request_hangup(chan)

    # -- wrap up ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        core = self.core
        a = self.transferer
        if a.transfer is self:
            a.transfer = None
        self.engine.under_way.pop(a.name, None)
        bridge = self.transferee_bridge
        if bridge.watcher == self._transferee_bridge_hangup:
            bridge.watcher = None
        while self._maybe_transferee_gone in core.on_hangup:
            core.on_hangup.remove(self._maybe_transferee_gone)
        # a party hung up while the transfer watched the bridge: its owner looks again
        owner = bridge.owner
        if (
            owner is not None
            and not owner.gone
            and not bridge.destroyed
            and any(c.soft_hangup for c in bridge.channels if c is not owner)
        ):
            from .core import PeerLeft

            owner.interrupt(PeerLeft())

    def _publish(self, result: str, dest_type: str) -> None:
        """The AttendedTransfer event, header for header as stasis_bridges.c builds it."""
        a = self.transferer
        headers: list[tuple[str, str]] = [("Result", result)]
        headers += a.snapshot("OrigTransferer")
        headers += self.transferee_bridge.headers(prefix="Orig")
        headers += a.snapshot("SecondTransferer")
        if self.target_bridge is not None:
            headers += self.target_bridge.headers(prefix="Second")
        transferee = next((c for c in self.held if not c.gone), None)
        if transferee is not None:
            headers += transferee.snapshot("Transferee")
        if self.target is not None and not self.target.one.gone:
            headers += self.target.one.snapshot("TransferTarget")
        headers.append(("IsExternal", "No"))
        headers.append(("DestType", dest_type))
        if dest_type in ("Bridge", "Threeway"):
            headers.append(("DestBridgeUniqueid", self.transferee_bridge.uniqueid))
        if dest_type == "Threeway":
            headers.append(("DestTransfererChannel", a.name))
        self.core.emit("AttendedTransfer", "call,all", headers)
