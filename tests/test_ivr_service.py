"""The IVR service over real AMI/TCP against the fake manager (recorded replies).

The end-to-end behaviour with callers and queues is tested on the simulator;
here: what the service sends, in which order, and its heartbeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from callcenter.ami import AMIClient
from callcenter.ami.client import Backoff
from callcenter.cases.identities import IdentityStore
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.ivr.menu import load_menu
from callcenter.ivr.service import HeartbeatSettings, IvrService
from callcenter.pbx.calls import CallRecorder
from callcenter.pbx.node import PbxNode
from callcenter.store import Store
from tests.support.fake_ami import FakeAMIServer

ROOT = Path(__file__).resolve().parents[1]
SILENT_CALLER = {
    "SET VARIABLE": "200 result=1\n",
    "STREAM FILE": "200 result=0 endpos=8000\n",
    "GET DATA": "200 result= (timeout)\n",
    "ASYNCAGI BREAK": "200 result=0\n",
}


async def until(predicate: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - state lives in other tasks
            await asyncio.sleep(0.005)


@pytest.fixture
def vault() -> Vault:
    return Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))


def make_ivr(client: AMIClient, store: Store, vault: Vault, interval: float = 60.0) -> IvrService:
    node = PbxNode("pbx1", client, recorder=CallRecorder(store))
    return IvrService(
        node="pbx1", ami=client, ops=node.ops, menu=load_menu(ROOT / "config" / "ivr.toml"),
        vault=vault, identities=IdentityStore(store), recorder=CallRecorder(store),
        heartbeat=HeartbeatSettings(interval_s=interval),
    )


def client_for(pbx: FakeAMIServer) -> AMIClient:
    return AMIClient(
        "127.0.0.1", pbx.port, pbx.username, pbx.secret, "md5",
        ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.05),
    )


async def test_caller_id_is_replaced_first_then_routed_and_handed_back(
    migrated_store: Store, vault: Vault
) -> None:
    async with FakeAMIServer(agi_results=SILENT_CALLER) as pbx:
        client = client_for(pbx)
        async with client:
            ivr = make_ivr(client, migrated_store, vault)
            await ivr.start()
            pbx.start_agi("PJSIP/caller-00000042", uniqueid="1795400000.42")
            await until(lambda: pbx.agi_state.get("PJSIP/caller-00000042") == "ended")
            await ivr.wait_idle()
            commands = [f["Command"] for f in pbx.actions("AGI")]
            # Nothing else may run on her channel before her number is replaced.
            assert commands[0].startswith('SET VARIABLE "CALLERID(name)" "')
            assert commands[1].startswith('SET VARIABLE "CALLERID(num)" "')
            token = commands[0].split('"')[3]
            assert token.startswith(("T-", "W-"))
            assert commands[-1] == "ASYNCAGI BREAK"
            routing = {
                c.split('"')[1]: c.split('"')[3]
                for c in commands if c.startswith("SET VARIABLE") and "TIMEOUT" not in c
            }
            # She never pressed a key: queued on the silent route, flagged, not dropped.
            assert routing["WPL_QUEUE"] == "wpl-emergency"
            assert "silent" in routing["WPL_FLAGS"].split(",")
            assert routing["WPL_CALLBACK_OK"] == "0"
            assert ivr.stats.sessions_routed == 1
            assert len(ivr.stats.first_command_latency) == 1
            await ivr.stop()


async def test_heartbeat_writes_the_pbx_clock_and_goodbye_deletes_it(
    migrated_store: Store, vault: Vault
) -> None:
    async with FakeAMIServer() as pbx:
        client = client_for(pbx)
        async with client:
            ivr = make_ivr(client, migrated_store, vault, interval=0.05)
            await ivr.start()
            await until(lambda: len(pbx.actions("DBPut")) >= 2)
            pings = pbx.actions("Ping")
            put = pbx.actions("DBPut")[0]
            assert (put["Family"], put["Key"]) == ("wpl", "heartbeat")
            assert pings, "the heartbeat reads the PBX clock from Ping"
            assert put["Val"].isdigit() and len(put["Val"]) == 10
            await ivr.stop()
            dels = pbx.actions("DBDel")
            assert [(d["Family"], d["Key"]) for d in dels] == [("wpl", "heartbeat")]


async def test_no_heartbeat_while_the_pbx_link_does_not_answer(
    migrated_store: Store, vault: Vault
) -> None:
    async with FakeAMIServer() as pbx:
        client = client_for(pbx)
        async with client:
            ivr = make_ivr(client, migrated_store, vault, interval=0.02)
            await ivr.start()
            await until(lambda: len(pbx.actions("DBPut")) >= 1)
            # The link stops answering (a wedged reader on either side): the
            # heartbeat goes stale, so the dialplan stops sending callers to the IVR.
            pbx.answer_pings = False
            await asyncio.sleep(0.05)
            before = len(pbx.actions("DBPut"))
            await asyncio.sleep(0.3)
            assert len(pbx.actions("DBPut")) == before
            await ivr.stop(say_goodbye=False)


async def test_a_bad_start_event_does_not_stop_the_ivr(
    migrated_store: Store, vault: Vault
) -> None:
    async with FakeAMIServer(agi_results=SILENT_CALLER) as pbx:
        client = client_for(pbx)
        async with client:
            ivr = make_ivr(client, migrated_store, vault)
            await ivr.start()
            ivr._inbox.put_nowait(object())  # type: ignore[arg-type]  # not a frame
            pbx.start_agi("PJSIP/caller-00000043", uniqueid="1795400000.43")
            await until(lambda: pbx.agi_state.get("PJSIP/caller-00000043") == "ended")
            await ivr.wait_idle()
            assert ivr.stats.sessions_routed == 1
            await ivr.stop()
