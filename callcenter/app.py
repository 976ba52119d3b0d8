"""The one composition root: builds every component and passes dependencies in.

Nothing else in the code base constructs collaborators for another package;
tests build the pieces they need the same way. Per PBX node this instance
runs an AMI client, the live model (PbxNode), queue statistics, the agents
service and, while it owns the PBX, the IVR and its heartbeat. Ownership is a
Redis lease when Redis is configured (several instances), and simply "yes"
for the embedded single-instance setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from callcenter.agents.accounts import AccountService
from callcenter.agents.models import SkillQueues
from callcenter.agents.roster import load_roster
from callcenter.agents.routing import OwnerRoutedDirectory, OwnerRoutedTransfers
from callcenter.agents.service import AgentService, CallHistory, RecordedCallHistory
from callcenter.agents.supervision import SupervisionService
from callcenter.agents.transfers import TransferService, load_transfer_settings
from callcenter.agents.views import AgentView, CallCard, EarlierContact
from callcenter.ami import AMIClient
from callcenter.bus import Bus, InProcessBus, RedisBus
from callcenter.cases.audit import AuditLog, anchor_key_from_env
from callcenter.cases.consent import ConsentService
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import WRAPUP_CHOICES, CaseCategory
from callcenter.cases.recordings import IngestTokens, RecordingStore
from callcenter.cases.search import CaseSearch
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, load_keyring
from callcenter.config import Settings
from callcenter.followups.callbacks import CallbackSettings, Followups, build_followups
from callcenter.followups.harasser import HarasserActionService
from callcenter.followups.referrals import ReferralService, load_directory
from callcenter.followups.scheduler import Handler
from callcenter.followups.sms import (
    SMS_TASK_KIND,
    SmsService,
    SmsSettings,
    SmsSettler,
    TwilioGateway,
    auth_token_from_env,
)
from callcenter.ivr.menu import load_menu
from callcenter.ivr.service import HeartbeatSettings, IvrService
from callcenter.pbx.calls import CallRecorder
from callcenter.pbx.lease import LeaseKeeper, PbxLease
from callcenter.pbx.node import PbxNode
from callcenter.queues.service import QueueStatsService
from callcenter.store import Store

log = logging.getLogger(__name__)


@dataclass
class NodeRuntime:
    """Everything this instance runs for one PBX node."""

    name: str
    client: AMIClient
    node: PbxNode
    stats: QueueStatsService
    ivr: IvrService
    agents: AgentService | None = None
    keeper: LeaseKeeper | None = None
    #: Set while this instance owns the PBX (always, without Redis).
    owning: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def link_up(self) -> bool:
        return self.owning and self.client.connected


class CallCenter:
    """The running service: store, bus, vault and one runtime per PBX node."""

    def __init__(
        self,
        settings: Settings,
        *,
        vault: Vault | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = (
            instance_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.store = Store.from_url(settings.database.url)
        if vault is None:
            key_file = settings.vault.key_file
            vault = Vault(Keyring.from_file(key_file) if key_file else load_keyring())
        self.vault = vault
        self.menu = load_menu(settings.ivr.menu_file)
        self.identities = IdentityStore(self.store)
        self.recorder = CallRecorder(self.store)
        self.skill_queues = SkillQueues(everyone=tuple(settings.agents.everyone_queues))
        self.accounts = AccountService(self.store, skill_queues=self.skill_queues)
        self.audit = AuditLog(self.store, anchor_key=anchor_key_from_env())
        self.cases = CaseService(self.store, self.vault, self.audit)
        self.consent = ConsentService(self.store, self.vault, self.audit)
        self.transfer_settings = load_transfer_settings(settings.agents.transfers_file)
        self.history = CallerHistory(self.store, self.cases)
        self.roster = (
            load_roster(settings.agents.roster_file) if settings.agents.roster_file else None
        )
        self.recordings = RecordingStore(
            self.store, settings.recordings.directory, self.vault.keyring, self.audit,
            ingest_tokens=IngestTokens.from_env(),
            retention=timedelta(days=settings.recordings.retention_days),
        )
        self.bus: Bus = (
            RedisBus(settings.redis.url, settings.redis.prefix, instance_id=self.instance_id)
            if settings.redis.url else InProcessBus()
        )
        self.referrals = ReferralService(
            self.store, load_directory(settings.followups.referral_directory), self.cases,
            bus=self.bus,
        )
        self.harasser_actions = HarasserActionService(self.store, self.referrals)
        self.sms: SmsService | None = None
        sms_settings = SmsSettings.from_toml(settings.followups.sms_file)
        if sms_settings.enabled:
            token = auth_token_from_env()
            self.sms = SmsService(
                self.store, self.vault, sms_settings, TwilioGateway(sms_settings, token),
                auth_token=token, audit=self.audit,
            )
        #: Callbacks, follow-up calls and the scheduler behind every follow-up task; built
        #: once the PBX nodes exist, run while this instance owns the first node.
        self.followups: Followups | None = None
        self._redis: Any = None
        self.nodes: dict[str, NodeRuntime] = {}
        self._started_hooks: list[Callable[[NodeRuntime], None]] = []

    def on_duty(self, username: str) -> bool:
        """Whether the duty roster has her on shift now."""
        if self.roster is None:
            return False
        return username in self.roster.rostered_now(datetime.now(UTC))

    def on_node(self, hook: Callable[[NodeRuntime], None]) -> None:
        """Called with each node runtime as it is built (wiring of agents, web push)."""
        self._started_hooks.append(hook)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.migrate()
        await self.bus.start()
        if self.settings.redis.url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self.settings.redis.url)
        for node_settings in self.settings.pbx:
            lease = None
            if self._redis is not None:
                lease = PbxLease(
                    self._redis, node_settings.name, self.instance_id,
                    prefix=self.settings.redis.prefix,
                )
            runtime = self._build_node(node_settings, lease)
            self.nodes[runtime.name] = runtime
            assert runtime.agents is not None
            await runtime.agents.start()
            for hook in self._started_hooks:
                hook(runtime)
            if lease is None:
                await self._become_owner(runtime)
            else:
                runtime.keeper = LeaseKeeper(
                    lease,
                    on_acquired=lambda _fence, r=runtime: self._become_owner(r),
                    on_lost=lambda r=runtime: self._stop_owning(r),
                )
                runtime.keeper.start()
        self._build_followups()
        self.referrals.start()

    def _build_followups(self) -> None:
        first = self._followups_node()
        if first is None:
            return
        handlers: dict[str, Handler] = dict(self.referrals.handlers())
        if self.sms is not None:
            handlers[SMS_TASK_KIND] = self.sms.run_task
        sms = self.sms
        fu = self.settings.followups
        self.followups = build_followups(
            self, first,
            CallbackSettings(
                presented_number=fu.callback_presented_number,
                queue_wait_s=fu.callback_queue_wait_s, ring_s=fu.callback_ring_s,
                max_attempts=fu.callback_max_attempts,
                first_delay=timedelta(seconds=fu.callback_first_delay_s),
            ),
            handlers=handlers,
            settler=(lambda calls: SmsSettler(sms, calls=calls)) if sms is not None else None,
        )
        self.referrals.bind_tasks(self.followups.scheduler)
        if self.sms is not None:
            self.sms.bind_scheduler(self.followups.scheduler)
        if first.owning:
            self.followups.start()

    def _followups_node(self) -> NodeRuntime | None:
        # Callbacks are placed through the first PBX node (see the closing note: one node).
        return next(iter(self.nodes.values()), None)

    async def stop(self) -> None:
        await self.referrals.stop()
        if self.followups is not None:
            await self.followups.stop()
        if self.sms is not None:
            await self.sms.close()
        for runtime in self.nodes.values():
            if runtime.keeper is not None:
                await runtime.keeper.stop()
            elif runtime.owning:
                await self._stop_owning(runtime, say_goodbye=True)
            if runtime.agents is not None:
                await runtime.agents.close()
            # Audit rows and pops of transfers and supervision still being written: finish
            # them while the store is open.
            for extra in ("transfers", "supervision"):
                service = runtime.extras.get(extra)
                if service is not None:
                    await service.settled()
            await runtime.node.drain()
        await self.bus.close()
        if self._redis is not None:
            await self._redis.aclose()
        await self.store.close()

    def _build_node(self, node_settings: Any, lease: PbxLease | None) -> NodeRuntime:
        secret = self.settings.secrets.ami_secret(node_settings.name)
        client = AMIClient(
            node_settings.host, node_settings.port, node_settings.username,
            secret.get_secret_value(), node_settings.auth,
        )
        # With a lease, every write to the PBX first proves this instance owns it.
        node = PbxNode(
            node_settings.name, client, recorder=self.recorder,
            guard=lease.check if lease is not None else None,
        )
        stats = QueueStatsService(node.model)
        node.on_event(stats.apply)
        node.on_resync(stats.rebuild)
        ivr = IvrService(
            node=node_settings.name, ami=client, ops=node.ops, menu=self.menu,
            vault=self.vault, identities=self.identities, recorder=self.recorder,
            heartbeat=HeartbeatSettings(
                family=self.settings.ivr.heartbeat_family,
                key=self.settings.ivr.heartbeat_key,
                interval_s=self.settings.ivr.heartbeat_interval,
            ),
            is_blocked=self.cases.is_blocked,
        )
        agents = AgentService(node, self.accounts, history=self.history,
                              skill_queues=self.skill_queues,
                              on_duty=self.on_duty if self.roster is not None else None)
        runtime = NodeRuntime(node_settings.name, client, node, stats, ivr, agents=agents)
        runtime.extras["transfers"] = TransferService(
            node, self.accounts, self.store, self.audit, self.consent, self.vault,
            self.transfer_settings, publish=self._publish_pop,
        )
        runtime.extras["supervision"] = SupervisionService(node, self.accounts, self.audit)
        return runtime

    async def _publish_pop(self, username: str, pop: dict[str, Any]) -> None:
        # A hand-over pop reaches her console on whichever instance serves it.
        from callcenter.web.bus_events import ScreenPopped

        await self.bus.publish(ScreenPopped(username=username, pop=pop))

    async def _become_owner(self, runtime: NodeRuntime) -> None:
        log.info("serving PBX %s", runtime.name)
        runtime.owning = True
        await runtime.ivr.start()
        await runtime.client.connect()
        if self.followups is not None and runtime is self._followups_node():
            self.followups.start()

    async def _stop_owning(self, runtime: NodeRuntime, *, say_goodbye: bool = False) -> None:
        # Losing the lease: another instance writes the heartbeat now, so ours
        # must not be deleted; an orderly shutdown of the only owner says goodbye.
        runtime.owning = False
        if self.followups is not None and runtime is self._followups_node():
            # Calls under way go on in the PBX; the next owner's settler accounts for them.
            with contextlib.suppress(Exception):
                await self.followups.stop()
        with contextlib.suppress(Exception):
            await runtime.ivr.stop(say_goodbye=say_goodbye)
        with contextlib.suppress(Exception):
            await runtime.client.close()


class CallerHistory:
    """What the "connected" screen-pop shows: her earlier calls and her cases."""

    def __init__(self, store: Store, cases: CaseService) -> None:
        self._calls = RecordedCallHistory(store)
        self._store = store
        self._cases = cases

    async def __call__(self, card: CallCard) -> CallHistory:
        history = await self._calls(card)
        record = await CallRecorder(self._store).get(card.node, card.linkedid)
        if record is None or record.caller_identity_id is None:
            return history
        cases = await self._cases.earlier_cases(record.caller_identity_id, limit=5)
        earlier = history.earlier + tuple(
            EarlierContact("", case.created_at.timestamp(), case.status.value,
                           case.category.value, case.reference)
            for case in cases
        )
        return CallHistory(history.ivr_path, earlier)


class WrapUpToCase:
    """The console's wrap-up form opens (or updates) the case of her call."""

    def __init__(self, center: CallCenter) -> None:
        self._center = center

    #: How long a wrap-up waits for its call's record: on an instance that does not own the
    #: PBX the owner may not have committed it yet when her form arrives.
    record_wait: float = 5.0

    async def __call__(self, username: str, form: Any) -> None:
        center = self._center
        record = None
        if form.node and form.linkedid:
            loop = asyncio.get_running_loop()
            give_up = loop.time() + self.record_wait
            while (record := await center.recorder.get(form.node, form.linkedid)) is None:
                if loop.time() >= give_up:
                    # Refused, not dropped: she stays in wrap-up and her console keeps the
                    # form to send again (the wrap-up time still ends it at worst).
                    from callcenter.web.errors import WebError

                    raise WebError(
                        409, "call_not_recorded",
                        "This call is not on record yet; send the form again in a moment.",
                    )
                await asyncio.sleep(0.25)
        if record is None:
            for runtime in center.nodes.values():
                view = runtime.agents.view(username) if runtime.agents else None
                if view is not None and view.call is not None:
                    record = await center.recorder.get(view.call.node, view.call.linkedid)
                    break
        if record is None:
            log.warning("wrap-up from %s without a call to attach it to", username)
            return
        category, sub_category = WRAPUP_CHOICES.get(form.category, (CaseCategory.OTHER, None))
        await center.cases.create_from_wrapup(
            record,
            WrapUpForm(category=category, sub_category=sub_category, note=form.notes or None),
            username,
        )


class RosteredAbsent:
    """Views of agents on shift now who are not signed in: the wallboard lists them."""

    def __init__(self, center: CallCenter) -> None:
        self._center = center
        self._accounts: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Account names for the views (refreshed every minute; accounts change rarely)."""
        self._accounts = {a.username: a for a in await self._center.accounts.list()}
        if self._task is None and self._center.roster is not None:
            self._task = asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):
                self._accounts = {a.username: a for a in await self._center.accounts.list()}

    def __call__(self, present: list[AgentView]) -> list[AgentView]:
        roster = self._center.roster
        if roster is None:
            return []
        now = datetime.now(UTC)
        signed_in = [v.username for v in present if v.state != "logged_out"]
        views = []
        for occurrence in roster.missing(now, signed_in):
            account = self._accounts.get(occurrence.who)
            views.append(AgentView(
                username=occurrence.who,
                display_name=account.display_name if account else occurrence.who,
                role=str(account.role) if account else "agent",
                endpoint=account.endpoint if account else "",
                state="logged_out", reason=None, since=occurrence.start.timestamp(),
                queues=(), paused_queues=(), softphone="unknown", rostered=True,
            ))
        return views


async def serve_web(
    center: CallCenter, *, host: str, port: int, cookie_secure: bool = True
) -> Any:
    """Start the console/wallboard/API server for ``center``; returns the aiohttp runner."""
    from aiohttp import web

    from callcenter.web.app import make_app
    from callcenter.web.deps import StoreCallLookup, WebDeps, WebOptions
    from callcenter.web.referrals_http import ReferralDesk
    from callcenter.web.transfers_http import TransferDeps

    first = next(iter(center.nodes.values()))
    assert first.agents is not None
    # Commands taken by an instance that does not own the PBX go to the owner.
    absent = RosteredAbsent(center)
    await absent.refresh()
    directory = OwnerRoutedDirectory(
        first.agents, node=first.name, owning=lambda: first.owning, bus=center.bus,
        absent_views=absent if center.roster is not None else None,
    )
    await directory.start()
    # Transfer and supervision commands taken here run on the instance owning the PBX.
    routed = OwnerRoutedTransfers(
        first.extras["transfers"], first.extras["supervision"],
        node=first.name, owning=lambda: first.owning, bus=center.bus,
    )
    await routed.start()
    deps = WebDeps(
        accounts=center.accounts,
        agents=directory,
        calls=StoreCallLookup(center.store),
        bus=center.bus,
        stats=lambda: {name: r.stats.snapshot() for name, r in center.nodes.items()},
        pbx_links=lambda: {
            name: ("up" if r.link_up else "standby" if not r.owning else "down")
            for name, r in center.nodes.items()
        },
        ami_lag=lambda: {
            name: r.node.event_lag for name, r in center.nodes.items()
            if r.owning and r.node.event_lag is not None
        },
        wrapup_sink=WrapUpToCase(center),
        cases=center.cases,
        consent=center.consent,
        search=CaseSearch(center.store, center.audit),
        audit=center.audit,
        recordings=center.recordings,
        transfers=TransferDeps(routed, routed.supervision),
        callbacks=center.followups.callbacks if center.followups is not None else None,
        referrals=ReferralDesk(center.referrals, center.harasser_actions),
        sms=center.sms,
        store=center.store,
        redis=center._redis,
        options=WebOptions(cookie_secure=cookie_secure,
                           redis_prefix=center.settings.redis.prefix,
                           metrics_token=os.environ.get("CALLCENTER_METRICS_TOKEN") or None),
    )
    runner = web.AppRunner(make_app(deps))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
