"""The dashboard page in a real headless Chromium, fed through a real broker."""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from ems_dashboard_ws.server import RunningServer
from tests.dashboard_ws.conftest import Tokens
from tests.dashboard_ws.samples import status, telemetry, three_phase

CHROMIUM = os.environ.get("EMS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Upper bound of each wait for the page to show something; not a speed requirement.
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _open(browser: Browser, server: RunningServer, problems: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1440, "height": 960})
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    await page.goto(server.http_url)
    return page


async def test_dashboard_shows_devices_live(
    browser: Browser,
    adapter: RunningServer,
    tokens: Tokens,
    publisher: aiomqtt.Client,
    tmp_path: Path,
) -> None:
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    page = await _open(browser, adapter, problems)
    await page.fill("#token-input", tokens.viewer)
    await page.click("#connect")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    assert tokens.viewer not in page.url
    assert await page.evaluate("sessionStorage.getItem('ems.token')") == tokens.viewer

    await publisher.publish("ems/meter-east/status", status("online"), qos=1, retain=True)
    await publisher.publish("ems/meter-west/status", status("online"), qos=1, retain=True)
    await publisher.publish("ems/meter-yard/status", status("offline"), qos=1, retain=True)
    for n in range(40):
        wave = math.sin(n / 5)
        powers = (1102.5 + 300 * wave, 845.0 + 120 * math.cos(n / 4), 1310.0 - 200 * wave)
        await publisher.publish("ems/meter-east/telemetry", three_phase(n, powers), qos=1)
        await publisher.publish(
            "ems/meter-west/telemetry", telemetry(n, voltage=231.7, power=420 + 60 * wave), qos=1
        )
    await publisher.publish("ems/meter-yard/telemetry", telemetry(1, power=0.0), qos=1)

    east = page.locator('[data-device="meter-east"]')
    await expect(east.locator('[data-role="state"]')).to_have_text("online")
    await expect(east.locator('tr[data-phase="A"] [data-field="voltage_rms"]')).to_have_text(
        "230.4"
    )
    await expect(east.locator("tbody tr")).to_have_count(3)
    await expect(page.locator('[data-device="meter-yard"] [data-role="state"]')).to_have_text(
        "offline"
    )
    await expect(page.locator(".card")).to_have_count(3)
    # The sparkline has as many points as samples were shown.
    await expect(east.locator("polyline")).to_have_attribute("points", _points(40))

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    if target := os.environ.get("EMS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(target) / shot.name)
    assert shot.stat().st_size > 0
    assert problems == []


def _points(count: int) -> re.Pattern[str]:
    return re.compile(rf"^(\S+,\S+ ){{{count - 1}}}\S+,\S+$")


async def test_refused_token_returns_to_sign_in(
    browser: Browser, adapter: RunningServer, tmp_path: Path
) -> None:
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    page = await _open(browser, adapter, problems)
    await page.fill("#token-input", "ems_thisIsNotAValidToken0123456789abcdef")
    await page.click("#connect")
    error = page.locator("#sign-in-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("invalid token")
    assert await page.evaluate("sessionStorage.getItem('ems.token')") is None
    shot = tmp_path / "refused.png"
    await page.screenshot(path=str(shot))
    if target := os.environ.get("EMS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(target) / shot.name)
    # Chromium reports the server's close as a console error only for handshake failures;
    # a clean 1008 close after the handshake must not produce any.
    assert problems == []
