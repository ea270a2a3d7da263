"""The console's cluster page in headless Chromium against a `tessera dev` cluster: nodes and drives live, a
killed node shown as down, its repair progress and a repair job appearing, the charts drawn. Set
TESSERA_CONSOLE_SCREENSHOT=PATH to keep the cluster page's screenshot (the README's docs/console-cluster.png)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.dev import DevCluster
from tests.console_helpers import Browser, skip_without_chromium, wait_for
from tests.s3_helpers import dev_client

MiB = 1 << 20
NODES = 7  # one more than EC 4+2 is wide: a lost node's fragments have somewhere to go


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[DevCluster, str]]:
    skip_without_chromium()
    port = _free_port()
    args = ["--console", f"127.0.0.1:{port}", "--node-grace", "3", "--scan-interval", "2"]
    c = DevCluster(tmp_path / "dev", nodes=NODES, metas=1, gateway_args=args, node_args=["--scrub-interval", "0"])
    c.start()
    yield c, f"http://127.0.0.1:{port}"
    c.stop()


def _repaired_parts(browser: Browser) -> int:
    found = re.match(r"(\d+) parts", browser.find("#repaired").text)
    return int(found.group(1)) if found else 0


def test_a_killed_node_shows_down_and_its_repair_progress_appears(
    browser: Browser, cluster: tuple[DevCluster, str]
) -> None:
    c, url = cluster
    s3 = dev_client(c)
    s3.create_bucket(Bucket="data")
    for i in range(4):
        s3.put_object(Bucket="data", Key=f"obj{i}", Body=os.urandom(2 * MiB))
    browser.sign_in(url, c.env["TESSERA_ACCESS_KEY"], c.env["TESSERA_SECRET_KEY"])
    browser.find("#create-bucket")
    browser.driver.get(f"{url}#/cluster")
    wait_for(lambda: len(browser.driver.find_elements("css selector", "#node-table tbody tr")) == NODES, 20, "nodes")
    browser.text("#summary", f"{NODES} up")
    wait_for(lambda: browser.driver.find_elements("css selector", "#charts svg"), 30, "a chart drawn")
    browser.page("cluster")

    c.kill("node2")
    # Live: the page refreshes itself; nothing is clicked or reloaded.
    browser.text("#summary", "1 down", timeout=30)
    down = browser.driver.find_elements("css selector", "#node-table tr.bad .pill.bad")
    assert [el.text for el in down] == ["down"]
    # Past the node grace the gateway rebuilds the node's fragments elsewhere, and the page shows it.
    wait_for(lambda: _repaired_parts(browser) > 0, 90, "repaired parts on the cluster page")
    browser.page("cluster-node-down")
    if shot := os.environ.get("TESSERA_CONSOLE_SCREENSHOT"):
        browser.driver.set_window_size(1280, 1500)  # the whole page, nodes included
        browser.driver.save_screenshot(shot)
        browser.driver.set_window_size(1280, 900)
    browser.find("#start-repair").click()
    browser.find("#job-table tr[data-kind=repair]")
    browser.text("#job-table tr[data-kind=repair] .phase", "done", timeout=60)
    browser.page("cluster-repair-job")
    browser.find("#start-scrub").click()  # every live node verifies every chunk
    browser.text("#job-table tr[data-kind=scrub] .phase", "done", timeout=60)
