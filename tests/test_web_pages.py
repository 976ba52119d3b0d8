"""The pages in a real headless Chromium: sign-in, the console with a screen-pop, the
wallboard; and not one Content-Security-Policy violation or script error on the way.

Skipped when Playwright or Debian's chromium is missing; fails instead in CI.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from callcenter.agents.views import EarlierContact, ScreenPop
from callcenter.bus import InProcessBus
from callcenter.store import Store
from tests.support.browser import CHROMIUM_ARGS, require_chromium
from tests.support.web import (
    PASSWORD,
    MemoryAgentDirectory,
    StatsStub,
    WebWorld,
    WrapUpInbox,
    add_call,
    add_staff,
    card,
    cheap_accounts,
    serve,
    web_options,
)


def _snapshot(now: float) -> dict[str, Any]:
    minute = int(now // 60) * 60
    series = [
        {"minute": minute - 60 * (59 - i), "waiting_max": (i * 7) % 5, "calls": 1,
         "service_level": 0.8, "service_level_today": 0.6 + (i % 10) / 40}
        for i in range(60)
    ]
    figures = {
        "queue": "wpl-general-hi", "waiting": 3, "longest_wait": 74.0,
        "agents": {"available": 1, "ringing": 0, "on_call": 2, "wrap_up": 1, "paused": 1,
                   "offline": 0},
        "offered": 120, "answered": 101, "abandoned": 12, "overflowed": 2, "lost": 0,
        "service_level": 0.83, "abandon_rate": 0.1, "average_speed_of_answer": 14.2,
        "average_handle_time": 312.0, "series": series,
    }
    return {
        "node": "up-east", "pbx_time": now, "day": "2026-11-22", "time_zone": "Asia/Kolkata",
        "overall": {**figures, "queue": None}, "queues": [figures], "agents": [],
        "abandoned_calls": [{"caller": "T-AB12CD", "call_id": "1.5", "queue": "wpl-general-hi",
                             "wait": 95, "position": 2, "original_position": 3, "at": now - 300,
                             "at_local": "09:41"}],
        "abandoned_calls_dropped": 0,
    }


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[WebWorld]:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'web.sqlite3'}")
    await store.migrate()
    accounts = cheap_accounts(store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    await add_call(store, "up-east", "1732260000.3", "PJSIP/agent1001", category="stalking",
                   risk="high", talk_seconds=240)
    try:
        async with InProcessBus() as bus, serve(
            store=store, bus=bus, accounts=accounts, directory=directory,
            stats=StatsStub({"up-east": _snapshot(time.time())}),
            options=web_options(console_interval=0.5, wallboard_interval=0.5),
            wrapup_sink=WrapUpInbox(),
        ) as world:
            yield world
    finally:
        await store.close()


async def _sign_in(page: Any, origin: str, username: str) -> None:
    await page.goto(f"{origin}/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")


async def test_console_and_wallboard_in_chromium(world: WebWorld, tmp_path: Path) -> None:
    problems: list[str] = []
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))

            await _sign_in(page, world.origin, "asha")
            await page.wait_for_url("**/console")
            await page.wait_for_selector("#link.up")
            await page.click("#go-available")
            await page.wait_for_selector("#state.state-available")

            view = world.directory.view("asha")
            assert view is not None
            flagged = card(flags=("repeat", "silent", "danger"))
            world.directory.set_view(replace(view, state="ringing", call=flagged))
            world.directory.pop(ScreenPop(
                username="asha", phase="connected", card=flagged,
                earlier=(EarlierContact(linkedid="1.1", started_at=time.time() - 86400,
                                        outcome="answered", category="stalking"),),
            ))
            await page.wait_for_selector("#call-card:not([hidden])")
            assert await page.text_content("#call-caller") == "T-7KQ2M9"
            assert await page.is_visible(".flag-danger")
            assert await page.is_visible(".flag-silent")
            assert (await page.text_content("#call-risk")) == "high"
            assert not await page.is_visible("#callback-notice")
            # We call her back: the agent is told to confirm who answered first.
            calling_back = card(flags=("callback", "abandoned_queue"))
            world.directory.set_view(replace(view, state="on_call", call=calling_back))
            world.directory.pop(ScreenPop(username="asha", phase="connected", card=calling_back))
            await page.wait_for_selector("#callback-notice", state="visible")
            world.directory.set_view(replace(view, state="on_call", call=flagged))
            world.directory.pop(ScreenPop(username="asha", phase="connected", card=flagged))
            await page.wait_for_selector("#callback-notice", state="hidden")
            await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)

            world.directory.set_view(replace(view, state="wrap_up", reason="wrapup",
                                             call=flagged))
            await page.wait_for_selector("#wrapup-submit:not([disabled])")
            # The form starts on the category the IVR gave her call...
            assert await page.input_value("#wrapup-category") == "stalking"
            await page.select_option("#wrapup-category", "dowry")
            # ...and a later update of the same call (her phone, a note) keeps her choice.
            world.directory.set_view(replace(view, state="wrap_up", reason="wrapup",
                                             call=flagged, softphone="unreachable"))
            await page.wait_for_selector("#softphone.phone-unreachable")
            assert await page.input_value("#wrapup-category") == "dowry"
            await page.fill("#wrapup-notes", "Referred to the women help desk.")
            await page.click("#wrapup-submit")
            await page.wait_for_selector("#state.state-available")
            inbox = world.deps.wrapup_sink
            assert isinstance(inbox, WrapUpInbox)
            assert [(who, form.category) for who, form in inbox.forms] == [("asha", "dowry")]
            assert await page.text_content("#recent-calls") is not None
            assert "T-7KQ2M9" in (await page.text_content("#recent-calls") or "")

            supervisor = await browser.new_page(viewport={"width": 1920, "height": 1080})
            supervisor.on("console", lambda m: m.type == "error" and problems.append(m.text))
            supervisor.on("pageerror", lambda e: problems.append(str(e)))
            await _sign_in(supervisor, world.origin, "deepa")
            await supervisor.wait_for_url("**/wallboard")
            await supervisor.wait_for_selector("#queue-rows tr")
            rows = await supervisor.text_content("#queue-rows")
            assert rows is not None and "wpl-general-hi" in rows and "83%" in rows
            assert "T-AB12CD" in (await supervisor.text_content("#abandoned-rows") or "")
            assert "Asha" in (await supervisor.text_content("#agent-rows") or "")
            await supervisor.screenshot(path=str(tmp_path / "wallboard.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []
