"""How fast the console's pages load against a bucket of many objects (paginated browsing).

    python -m bench.console [--objects 10000] [--endpoint URL --console URL] [--no-browser] [--json]

Without --endpoint it starts a `tessera server` of its own in a temporary directory. It fills a bucket with
--objects small objects, signs in to the console, and times, over --rounds rounds: the page and its assets,
the bucket list, the first, a middle and the last page of the object browser, an object's details with its
fragments, and the cluster page's document. With chromium and selenium installed it also times a real
browser opening the bucket and turning a page, until the rows are drawn. Every time must be under --limit
seconds (1 by default), or the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.client import Credentials, S3Client
from cli.launch import launch, stop

ACCESS, SECRET = "BENCHCONSOLEKEY00001", "bench-console-secret-0123456789abcdef"
BUCKET = "console-bench"
ASSETS = ("/", "/static/style.css", "/static/js/main.js", "/static/js/api.js", "/static/js/buckets.js")


async def fill(endpoint: str, creds: Credentials, count: int, concurrency: int = 32) -> None:
    body = b"x" * 1024
    async with S3Client(endpoint, creds) as s3:
        await s3.create_bucket(BUCKET)
        keys = iter(range(count))

        async def worker() -> None:
            for i in keys:
                await s3.put_object(BUCKET, f"obj-{i:06d}", body, len(body))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


class Console:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.csrf = ""
        self._open = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())).open

    def get(self, path: str) -> tuple[float, Any]:
        start = time.perf_counter()
        with self._open(self.base + path, timeout=60) as resp:
            body = resp.read()
        took = time.perf_counter() - start
        is_json = resp.headers.get("Content-Type", "").startswith("application/json")
        return took, json.loads(body) if is_json else body

    def sign_in(self, access: str, secret: str) -> float:
        body = json.dumps({"access_key": access, "secret_key": secret}).encode()
        req = urllib.request.Request(self.base + "/api/session", body, {"Content-Type": "application/json"})
        start = time.perf_counter()
        with self._open(req, timeout=60) as resp:
            self.csrf = json.loads(resp.read())["csrf"]
        return time.perf_counter() - start


def http_times(console: Console, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}

    def note(name: str, took: float) -> None:
        times.setdefault(name, []).append(took)

    listing = f"/api/buckets/{BUCKET}/objects"
    for _ in range(rounds):
        note("page and assets", sum(console.get(a)[0] for a in ASSETS))
        note("bucket list", console.get("/api/buckets")[0])
        took, doc = console.get(listing)
        note("objects: first page", took)
        tokens = []
        while doc["next"]:  # every page, as "Next page" walks them
            tokens.append(doc["next"])
            took, doc = console.get(f"{listing}?token={urllib.request.quote(doc['next'], safe='')}")
            note("objects: next page", took)
        if tokens:
            mid = tokens[len(tokens) // 2]
            note("objects: a middle page", console.get(f"{listing}?token={urllib.request.quote(mid, safe='')}")[0])
        key = doc["objects"][-1]["key"] if doc["objects"] else "obj-000000"
        note("object details", console.get(f"/api/buckets/{BUCKET}/object?key={key}")[0])
        note("object fragments", console.get(f"/api/inspect?bucket={BUCKET}&key={key}")[0])
        note("cluster", console.get("/api/cluster")[0])
        note("metrics", console.get("/api/metrics")[0])
    return times


def browser_times(base: str, access: str, secret: str, rounds: int) -> dict[str, list[float]]:
    """A real headless Chromium: open the bucket's first page, then the next, until the rows are drawn."""
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
    times: dict[str, list[float]] = {}
    try:
        # Polled often: the default 0.5 s would be what is measured. A row may be replaced while it is read.
        wait = WebDriverWait(driver, 30, poll_frequency=0.01, ignored_exceptions=(StaleElementReferenceException,))
        driver.get(base)
        wait.until(ec.visibility_of_element_located((By.ID, "access-key"))).send_keys(access)
        driver.find_element(By.ID, "secret-key").send_keys(secret + "\n")
        wait.until(ec.presence_of_element_located((By.ID, "bucket-list")))
        for _ in range(rounds):
            start = time.perf_counter()
            driver.get(f"{base}/#/b/{BUCKET}/")
            driver.refresh()  # a whole page load, not only a change of hash
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#objects tbody tr")))
            times.setdefault("browser: open the bucket", []).append(time.perf_counter() - start)
            first = driver.find_element(By.CSS_SELECTOR, "#objects tbody tr").get_attribute("data-key")
            start = time.perf_counter()
            driver.find_element(By.ID, "next-page").click()
            wait.until(
                lambda d, first=first: (
                    d.find_element(By.CSS_SELECTOR, "#objects tbody tr").get_attribute("data-key") != first
                )
            )
            times.setdefault("browser: next page", []).append(time.perf_counter() - start)
    finally:
        driver.quit()
    return times


def report(times: dict[str, list[float]], limit: float, as_json: bool) -> bool:
    rows = {name: {"n": len(t), "median_s": sorted(t)[len(t) // 2], "max_s": max(t)} for name, t in times.items()}
    ok = all(r["max_s"] < limit for r in rows.values())
    if as_json:
        print(json.dumps({"limit_s": limit, "ok": ok, "times": rows}))
    else:
        print(f"{'what':<28} {'n':>4} {'median':>9} {'max':>9}")
        for name, r in rows.items():
            flag = "" if r["max_s"] < limit else f"  over {limit:g} s"
            print(f"{name:<28} {r['n']:>4} {r['median_s'] * 1000:>7.1f}ms {r['max_s'] * 1000:>7.1f}ms{flag}")
        print("all under", f"{limit:g} s" if ok else f"{limit:g} s: NO")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit", type=float, default=1.0, help="seconds every page must load within")
    p.add_argument("--endpoint", help="an S3 endpoint to use (else a server of its own)")
    p.add_argument("--console", help="that endpoint's console URL")
    p.add_argument("--no-browser", action="store_true", help="HTTP timings only, even with chromium installed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    access = os.environ.get("AWS_ACCESS_KEY_ID", ACCESS) if args.endpoint else ACCESS
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", SECRET) if args.endpoint else SECRET
    tmp = proc = None
    try:
        endpoint, console = args.endpoint, args.console
        if not endpoint:
            tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
            env = {**os.environ, "TESSERA_ACCESS_KEY": access, "TESSERA_SECRET_KEY": secret}
            drives = [str(tmp / f"d{i}") for i in range(6)]
            run = launch(["server", *drives, "--listen", "127.0.0.1:0", "--console", "127.0.0.1:0"], env, tmp / "log")
            proc, endpoint = run.proc, run.endpoint
            console = next(ln.split()[1] for ln in run.banner.splitlines() if ln.startswith("Console:"))
        if not console:
            p.error("--console is needed with --endpoint")
        start = time.perf_counter()
        asyncio.run(fill(endpoint, Credentials(access, secret), args.objects))
        if not args.json:
            print(f"filled {BUCKET} with {args.objects} objects in {time.perf_counter() - start:.1f}s")
        c = Console(console)
        times = {"sign-in": [c.sign_in(access, secret)]}
        times |= http_times(c, args.rounds)
        if not args.no_browser and shutil.which("chromium") and shutil.which("chromedriver"):
            try:
                times |= browser_times(console, access, secret, args.rounds)
            except ImportError:
                print("selenium is not installed: no browser timings", file=sys.stderr)
        return 0 if report(times, args.limit, args.json) else 1
    finally:
        if proc is not None:
            stop(proc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
