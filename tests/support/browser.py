"""Headless Chromium for browser tests: Debian's chromium driven by Playwright.

A browser download cannot work here, so Playwright drives the system
``chromium`` through ``executable_path``. Under CALLCENTER_REQUIRE_SERVICES=1
(CI) a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def require_chromium() -> str:
    """The path of Debian's chromium, or skip/fail the test when it is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = []
    if path is None:
        missing.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CALLCENTER_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    assert path is not None
    return path
