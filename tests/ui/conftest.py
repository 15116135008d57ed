"""Fixtures for the dashboard's browser tests: a Mosquitto of their own, a real `tvilling serve`
process (embedded store in a temp dir, alarm rules in its config), a seeded plant, and Debian
Chromium driven by Playwright. Without Chromium or Playwright the tests skip, except under
``CI=true`` where that is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from serve_util import MOSQUITTO, free_port, mosquitto, wait_healthy

from .plant_seed import MODELS, analytics_outputs, seed

CHROMIUM = Path(os.environ.get("TVILLING_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"

ALARM_RULES = """
[[alarm_rules]]
name = "bearing-hot"
model = "{bearing}"
property = "temperature"
kind = "threshold"
severity = "major"
above = 80.0
clear = 75.0
message = "bearing temperature {{value:.1f}} °C"

[[alarm_rules]]
name = "bearing-anomaly"
model = "{bearing}"
property = "anomaly_score"
kind = "threshold"
severity = "critical"
above = 1.0
clear = 0.8
message = "vibration anomaly, score {{value:.2f}}"
"""


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"dashboard browser tests need {what} (CI=true: not skipping)", pytrace=False)
    pytest.skip(f"dashboard browser tests need {what}")


@pytest.fixture(scope="module")
def sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _missing(f"Chromium at {CHROMIUM} (apt-get install chromium); no browser is ever downloaded")
    return sync_playwright


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Mosquitto of this module's own on a free port: commands have somewhere to go, no device answers."""
    if not Path(MOSQUITTO).exists():
        _missing("mosquitto (the command transport goes through it)")
    with mosquitto(tmp_path_factory.mktemp("mosquitto")) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker: str) -> Iterator[str]:
    """`tvilling serve` on a free port: embedded store in a temp dir, the broker above, alarm rules."""
    yield from serve(tmp_path_factory, broker, ALARM_RULES.format(bearing=MODELS["bearing"]), "serve")


def serve(tmp_path_factory: pytest.TempPathFactory, broker: str, config_text: str, name: str) -> Iterator[str]:
    """Run `tvilling serve` with this settings file on a free port until the generator is closed."""
    tmp = tmp_path_factory.mktemp(name)
    config = tmp / "tvilling.toml"
    config.write_text(config_text, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "TVILLING_LOG_LEVEL": "warning", "TVILLING_CONFIG": str(config)}
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp / "data"),
                             "--port", str(port), "--broker", broker], cwd=tmp, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(base)
        except AssertionError:
            raise AssertionError(f"server did not start: {(tmp / 'server.log').read_text()[-3000:]}") from None
        yield base
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def plant(server: str) -> dict[str, Any]:
    info = seed(server)
    info["analytics"] = analytics_outputs(server)
    return info


@pytest.fixture(scope="module")
def browser(sync_playwright: Any) -> Iterator[Any]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page at 1280×800 with every request and page error recorded."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)

    def open(self, route: str, ready: str) -> Any:
        """Load ``/#route`` and wait for the page to say it is ready and its live stream is up."""
        self.page.goto(f"{self.base}/{route}")
        self.page.wait_for_function(f"document.body.dataset.ready === {ready!r}", timeout=20_000)
        self.page.wait_for_selector('#live[data-state="live"]', timeout=10_000)
        return self.page

    def foreign(self) -> list[str]:
        """Requests to any host but this server's loopback address."""
        return [u for u in self.requests
                if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"]


@pytest.fixture
def watched(browser: Any, server: str, plant: dict[str, Any]) -> Iterator[Watched]:
    ctx = browser.new_context(viewport=VIEWPORT, bypass_csp=True)  # waits evaluate strings in the page
    w = Watched(ctx.new_page(), server)
    try:
        yield w
        assert w.requests, "the page made no request at all"
        assert w.foreign() == [], f"the dashboard reached outside the machine: {w.foreign()}"
        assert w.errors == [], f"errors in the page: {w.errors}"
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Save a screenshot to a temp dir and, for the documented ones, to docs/screenshots/."""
    tmp = tmp_path_factory.mktemp("screenshots")

    def save(page: Any, name: str, *, docs: bool = False) -> Path:
        path = tmp / name
        page.screenshot(path=str(path))
        if docs:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / name)
        return path

    return save


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
