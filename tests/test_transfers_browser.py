"""Issue 8 in a real browser: a warm transfer from one agent's console to another's.

Asha and Meera sign in to their consoles (Debian's chromium through Playwright), go
available; a simulated caller goes through the IVR to Asha. Asha types Meera's phone,
a note, and presses "Consult first": the caller hears music while the two agents talk,
Meera's console shows the hand-over (the caller's token, category, flags, Asha's note),
then Asha completes the transfer from her console and the caller is with Meera. The
product runs as ``app.py`` builds it, on the simulated PBX over real AMI/TCP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callcenter.store import Store
from tests.support.browser import CHROMIUM_ARGS, require_chromium
from tests.support.helpline import until
from tests.test_transfers_e2e import PASSWORD, rig

NOTE = "Asks for a counsellor; prefers Hindi."


async def console_of(browser: Any, base: str, username: str) -> Any:
    page = await browser.new_page(viewport={"width": 1366, "height": 900})
    await page.goto(f"{base}/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url("**/console")
    await page.wait_for_selector("#link.up")
    await page.click("#go-available")
    await page.wait_for_selector("#state.state-available", timeout=15000)
    return page


@pytest.mark.timeout(180)
@pytest.mark.parametrize("migrated_store", ["sqlite"], indirect=True)
async def test_warm_transfer_from_one_console_to_another(
    migrated_store: Store, tmp_path: Path
) -> None:
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    async with rig(migrated_store, sign_in=False) as r, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            asha = await console_of(browser, r.base, "asha")
            meera = await console_of(browser, r.base, "meera")
            await r.ring_in()
            await asha.wait_for_selector("#state.state-on_call", timeout=30000)
            token = (await asha.text_content("#call-caller") or "").strip()
            assert token.startswith("T-")
            # Nothing to complete before a consult.
            assert await asha.is_hidden("#transfer-complete")

            await asha.fill("#transfer-colleague", "agent2")
            await asha.fill("#transfer-note", NOTE)
            await asha.click("#transfer-warm")
            await asha.wait_for_selector("#transfer-complete:not([disabled])")
            # Meera's console shows the case so far while Asha consults her.
            await meera.wait_for_selector("#handover:not([hidden])", timeout=20000)
            assert (await meera.text_content("#handover-caller") or "").strip() == token
            assert (await meera.text_content("#handover-from") or "").strip() == "asha"
            assert NOTE in (await meera.inner_text("#handover-notes"))
            assert (await meera.text_content("#handover-category") or "").strip() not in ("", "—")
            await until(lambda: r.paths() == {("agent1", "agent2"), ("agent2", "agent1")},
                        within=20)
            await meera.screenshot(path=str(tmp_path / "meera-handover.png"))
            await asha.screenshot(path=str(tmp_path / "asha-consulting.png"))

            await asha.click("#transfer-complete")
            await until(lambda: r.paths() == {("carrier", "agent2"), ("agent2", "carrier")},
                        within=20)
            await asha.wait_for_selector("#state.state-wrap_up", timeout=15000)
            await asha.wait_for_selector("#transfer-status:has-text('Transferred')")
            assert await asha.is_hidden("#transfer-error")
            assert await asha.is_disabled("#transfer-warm")
            await asha.screenshot(path=str(tmp_path / "asha-after.png"))
        finally:
            await browser.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("migrated_store", ["sqlite"], indirect=True)
async def test_supervisor_listens_then_barges_from_the_wallboard(
    migrated_store: Store, tmp_path: Path
) -> None:
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    talk = {("carrier", "agent1"), ("agent1", "carrier")}
    async with rig(migrated_store, sign_in=False) as r, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            asha = await console_of(browser, r.base, "asha")
            await r.ring_in()
            await asha.wait_for_selector("#state.state-on_call", timeout=30000)

            wallboard = await browser.new_page(viewport={"width": 1600, "height": 1000})
            await wallboard.goto(f"{r.base}/login")
            await wallboard.fill("#username", "sunita")
            await wallboard.fill("#password", PASSWORD)
            await wallboard.click("#sign-in")
            await wallboard.wait_for_url("**/wallboard")
            listen = 'button[data-spy-agent="asha"][data-spy-mode="listen"]'
            await wallboard.click(listen, timeout=20000)
            await until(lambda: r.paths() == talk | {("agent9", "agent1"),
                                                     ("agent9", "carrier")}, within=20)
            await wallboard.click('button[data-spy-agent="asha"][data-spy-mode="barge"]')
            await until(lambda: ("carrier", "agent9") in r.paths(), within=20)
            await wallboard.wait_for_selector("#spy-status:has-text('Barge')")
            await wallboard.screenshot(path=str(tmp_path / "wallboard-barge.png"))
            await wallboard.click('button[data-spy-agent="asha"][data-spy-mode="stop"]')
            await until(lambda: r.paths() == talk, within=20)
            assert await wallboard.is_hidden("#spy-error")
        finally:
            await browser.close()
        rows = await r.center.audit.entries(subject="agent:asha")
        assert sorted(row.action for row in rows if row.action.startswith("supervision.")) == [
            "supervision.end", "supervision.mode", "supervision.start",
        ]
