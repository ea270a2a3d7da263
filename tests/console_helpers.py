"""What the console tests share: a server or dev-cluster gateway with its console, a plain HTTP client of the
console API (cookies kept), and a headless Chromium driven through Selenium that keeps a screenshot of every
page it visits, for a failed test to leave behind."""

from __future__ import annotations

import http.cookiejar
import json
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A `tessera server` with its console, shared by one test module: (server, console URL)."""
    srv, url = start_console_server(tmp_path_factory.mktemp("console"))
    yield srv, url
    srv.stop()


def public_read(bucket: str) -> dict[str, Any]:
    """A bucket policy that lets anyone read the bucket's objects."""
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    return {"Version": "2012-10-17", "Statement": [statement]}


def console_url(banner: str) -> str:
    return next(ln.split(None, 1)[1].strip() for ln in banner.splitlines() if ln.startswith("Console:"))


def start_console_server(base: Path, extra: tuple[str, ...] = ()) -> tuple[ServerProcess, str]:
    """A real `tessera server` with its console on a free port; (server, console URL)."""
    srv = start_server(base, extra=("--console", "127.0.0.1:0", *extra))
    return srv, console_url(srv.banner)


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


@dataclass
class ConsoleClient:
    """The console's JSON API as a browser uses it: a cookie jar, and the CSRF token from sign-in."""

    base: str
    csrf: str = ""
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)
    context: ssl.SSLContext | None = None  # an https console's CA

    def __post_init__(self) -> None:
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if self.context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self.context))
        self._open = urllib.request.build_opener(*handlers).open

    def call(
        self, method: str, path: str, body: bytes | dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        hdrs = dict(headers or {})
        if method not in ("GET", "HEAD") and self.csrf and "X-CSRF-Token" not in hdrs:
            hdrs["X-CSRF-Token"] = self.csrf
        data = body
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)  # type: ignore[arg-type]
        try:
            with self._open(req, timeout=60) as resp:
                return Reply(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, err.headers, err.read())

    def sign_in(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Reply:
        r = self.call("POST", "/api/session", {"access_key": access_key, "secret_key": secret_key})
        if r.status == 200:
            self.csrf = r.json()["csrf"]
        return r


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(every)


class Browser:
    """Headless Chromium; page() names each step and keeps its screenshot in `shots`."""

    def __init__(self, shots: Path, downloads: Path) -> None:
        from selenium import webdriver

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM or ""
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
            opts.add_argument(arg)
        opts.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
        service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
        self.driver = webdriver.Chrome(options=opts, service=service)
        self.driver.set_page_load_timeout(30)
        self.shots = shots
        self.downloads = downloads
        self._n = 0

    def page(self, name: str) -> None:
        self._n += 1
        self.driver.save_screenshot(str(self.shots / f"{self._n:02d}-{name}.png"))

    def find(self, css: str, timeout: float = 20) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def found() -> Any:
            try:
                el = self.driver.find_element(By.CSS_SELECTOR, css)
                return el if el.is_displayed() or el.get_attribute("type") == "file" else None
            except (NoSuchElementException, StaleElementReferenceException):
                return None

        return wait_for(found, timeout, f"{css} on {self.driver.current_url}")

    def text(self, css: str, contains: str, timeout: float = 20) -> str:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def has() -> str:
            try:
                text = self.driver.find_element(By.CSS_SELECTOR, css).text
            except (NoSuchElementException, StaleElementReferenceException):
                return ""
            return text if contains in text else ""

        return wait_for(has, timeout, f"{contains!r} in {css}")

    def accept_confirm(self) -> None:
        wait_for(lambda: _alert(self.driver), 10, "a confirm dialog").accept()

    def sign_in(self, url: str, access_key: str, secret_key: str) -> None:
        self.driver.get(url)
        self.find("#access-key").send_keys(access_key)
        self.find("#secret-key").send_keys(secret_key)
        self.find("#signin button[type=submit]").click()

    def at_new_bucket(self, served: tuple[ServerProcess, str], prefix: str = "") -> tuple[Any, str]:
        """Signed in as the root, on the page of a new bucket (at prefix): (a boto3 client, the bucket)."""
        srv, url = served
        s3 = srv.client()
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        self.sign_in(url, ACCESS_KEY, SECRET_KEY)
        self.find("#create-bucket")
        self.driver.get(f"{url}#/b/{bucket}/{prefix}")
        self.find("#drop-zone")
        return s3, bucket

    def quit(self) -> None:
        self.driver.quit()


def _alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        _ = alert.text
        return alert
    except NoAlertPresentException:
        return None


def skip_without_chromium() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (python -m tests.system_deps installs them)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A headless Chromium of the test's own; a failed test leaves its screenshots in a temp dir, named."""
    skip_without_chromium()
    shots = Path(tempfile.mkdtemp(prefix="console-shots-"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    b = Browser(shots, downloads)
    failed_before = request.session.testsfailed
    yield b
    if request.session.testsfailed > failed_before:
        b.page("at-failure")
        print(f"\nconsole screenshots of {request.node.name}: {shots}")
    else:
        shutil.rmtree(shots, ignore_errors=True)
    b.quit()
