"""The live dashboard in a real browser, and ``rerankpool top`` in a real terminal, on a real pool under load.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) opens the
gateway's ``/dashboard``; the figures it shows must equal the broker's ``stats`` reply taken at
the same moment, a killed worker must be flagged, and a broker that does not answer must be
said so. ``rerankpool top`` runs in tmux and is read back with ``capture-pane``. Screenshots go
to ``$RERANKPOOL_SCREENSHOTS`` (a temporary folder if unset).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rerankpool import AsyncClient
from rerankpool.launch import LocalPool
from tests.integration.gateway_process import GatewayProcess

FAST = ["--heartbeat-interval-s", "0.2", "--liveness", "5"]
WORDS = "the river city of berlin runs north past old museum station park bridge history".split()


def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1800"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver), options=options)


def wait_for(driver, script: str, timeout_s: float = 30.0):
    """Poll a JavaScript expression on the page until it is truthy (the page's own state, not a sleep)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: d.execute_script(script))


class Load:
    """Clients sending 8-pair rerank requests in a loop from a thread, until ``stop``."""

    def __init__(self, address: str, clients: int = 3) -> None:
        self.address, self.clients = address, clients
        self._stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with AsyncClient(self.address, timeout=30.0) as client:
            async def loop(k: int) -> None:
                i = 0
                while not self._stop.is_set():
                    docs = [" ".join(WORDS[(i + j + k) % len(WORDS):] + WORDS[:3]) for j in range(8)]
                    await client.rerank("where is the museum", docs)
                    self.sent += 1
                    i += 1

            await asyncio.gather(*(loop(k) for k in range(self.clients)))

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=60)

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def pool():
    with LocalPool(model="tiny-bert", workers=2, broker_args=[*FAST, "--max-batch", "8"], worker_args=FAST) as pool:
        yield pool


@pytest.fixture(scope="module")
def gateway(pool):
    with GatewayProcess(pool.frontend) as gateway:
        yield gateway


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("RERANKPOOL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def page_figures(driver) -> dict:
    return driver.execute_script("""
        const text = id => document.getElementById(id).textContent;
        return {pairs_scored: Number(text("pairs-scored")), workers_live: Number(text("workers-live")),
                workers_lost: Number(text("workers-lost")), queued: Number(text("queued-pairs")),
                updated: document.body.dataset.updated,
                workers: [...document.querySelectorAll("tr[data-worker]")].map(
                    r => [r.dataset.worker, r.dataset.state]),
                models: [...document.querySelectorAll("tr[data-model]")].map(r => r.dataset.model),
                lines: [...document.querySelectorAll("svg polyline")].filter(p => p.getAttribute("points")).length};""")


def test_the_dashboard_draws_the_pool_under_load_and_shows_what_stats_says(pool, gateway, shots):
    driver = browser()
    try:
        with Load(pool.frontend):
            driver.get(gateway.url + "/dashboard")
            wait_for(driver, "return document.body.dataset.ready === '1' && "
                             "window.lastStats.history.rows.filter(r => r.pairs_per_s > 0).length >= 8",
                     timeout_s=60)  # eight seconds of load drawn
            driver.save_screenshot(str(shots / "dashboard-under-load.png"))
        with pool.client() as client:
            while client.stats()["requests_in_flight"]:  # the load has stopped: the figures hold still
                pass
            updated = page_figures(driver)["updated"]
            wait_for(driver, f"return document.body.dataset.updated !== '{updated}'")  # a redraw after the load
            shown, stats = page_figures(driver), client.stats()
        assert shown["pairs_scored"] == stats["pairs_scored"] > 0
        assert shown["workers_live"] == len(stats["workers"]) == 2 and shown["queued"] == stats["queue_pairs"] == 0
        assert sorted(name for name, _ in shown["workers"]) == sorted(w["name"] for w in stats["workers"])
        assert shown["models"] == [m["name"] for m in stats["models"]] == ["tiny-bert"]
        assert shown["lines"] >= 4
    finally:
        driver.quit()


def test_a_killed_worker_is_flagged_on_the_page(pool, gateway, shots):
    driver = browser()
    try:
        driver.get(gateway.url + "/dashboard")
        wait_for(driver, "return document.body.dataset.ready === '1'")
        victim = pool.worker_pids()[0]
        with pool.client() as client:
            name = next(w["name"] for w in client.stats()["workers"] if w["pid"] == victim)
        os.kill(victim, signal.SIGKILL)
        wait_for(driver, f"const r = document.querySelector('tr[data-worker=\"{name}\"]');"
                         "return r && r.dataset.state === 'lost'")  # silent first, then lost, for a minute
        driver.save_screenshot(str(shots / "dashboard-worker-killed.png"))
        assert int(driver.find_element("id", "workers-lost").text) >= 1
    finally:
        driver.quit()
        pool.wait_for_workers(2)  # the supervisor restarts it


def test_a_broker_that_does_not_answer_is_shown_so(tmp_path, shots):
    driver = browser()
    try:
        with GatewayProcess(f"ipc://{tmp_path}/nobody") as gateway:
            driver.get(gateway.url + "/dashboard")
            wait_for(driver, "return document.body.dataset.ready === 'down'")
            status = driver.find_element("id", "status").text
            assert status == "broker unreachable"
            assert "does not answer" in driver.find_element("id", "summary").text
            assert "Traceback" not in driver.page_source
            driver.save_screenshot(str(shots / "dashboard-broker-down.png"))
    finally:
        driver.quit()


def tmux_screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


@pytest.mark.parametrize("where", ["pool", "nobody"])
def test_top_draws_the_pool_in_a_real_terminal(pool, tmp_path, where):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    address = pool.frontend if where == "pool" else f"ipc://{tmp_path}/nobody"
    session = f"rerankpool-top-{os.getpid()}-{where}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                    f"{sys.executable} -m rerankpool top --connect {address}"], check=True)
    try:
        want = ("WORKER", "tiny-bert", "pairs/s") if where == "pool" else ("the broker does not answer",)
        with pool.client() as client:
            names = [w["name"] for w in client.stats()["workers"]]
        deadline = time.monotonic() + 60
        while True:  # read the terminal until top has drawn its screen
            screen = tmux_screen(session)
            if all(w in screen for w in want) and (where != "pool" or all(n in screen for n in names)):
                break
            assert time.monotonic() < deadline, f"top never drew {want}:\n{screen}"
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
