"""A real headless Chromium driven over the DevTools protocol, for the report's browser tests.

    with Browser() as browser:                      # pytest.skip(...) if no chromium is installed
        page = browser.open("file:///tmp/site/index.html")
        page.requests        # every URL the page asked for (Network.requestWillBeSent)
        page.errors          # console errors, uncaught exceptions, CSP and load errors (Log/Runtime)
        page.evaluate("document.title")
        page.screenshot(path, width=1280)

The protocol goes over one websocket (the `websockets` package Prefect already installs), with
flattened target sessions. Every wait has a deadline; the browser process is killed on exit.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEADLINE = 30.0        # seconds for the browser to start, a page to load, a command to answer


def find_chromium() -> str | None:
    override = os.environ.get("OKR_SYNC_CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class Page:
    def __init__(self, browser: "Browser", session: str):
        self.browser, self.session = browser, session
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.loaded = False

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def on_event(self, message: dict[str, Any]) -> None:
        method, params = message["method"], message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"log ({params['entry'].get('source')}): {params['entry'].get('text')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.errors.append(f"load failed: {params.get('errorText')}")
        elif method == "Page.loadEventFired":
            self.loaded = True

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in answer:
            raise AssertionError(f"script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, path: Path, width: int = 1280, height: int | None = None, mobile: bool = False) -> Path:
        """A PNG of the whole page at `width` CSS pixels (`mobile`: a phone's viewport and scale)."""
        full = height or int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": full, "deviceScaleFactor": 1,
                                                         "mobile": mobile})
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def print_pdf(self, path: Path) -> Path:
        data = self.send("Page.printToPDF", {"printBackground": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


class Browser:
    def __init__(self, executable: str | None = None):
        self.executable = executable or find_chromium()
        self._ids = itertools.count(1)
        self._pages: dict[str, Page] = {}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Browser":
        from websockets.sync.client import connect

        if self.executable is None:
            pytest.skip("no Chromium installed (apt-get install chromium; .ci/run installs it): the report's "
                        "browser checks need a real browser")
        self.profile = tempfile.mkdtemp(prefix="okr-chromium-")
        self.process = subprocess.Popen(
            [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = self._devtools_url()
        self.ws = connect(url, max_size=None, open_timeout=DEADLINE)
        return self

    def _devtools_url(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        ends = time.monotonic() + DEADLINE
        seen = []
        while time.monotonic() < ends:
            line = self.process.stderr.readline()
            if not line:
                if self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
        self.close()
        pytest.fail("Chromium did not start its DevTools endpoint:\n" + "".join(seen[-20:]))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        ends = time.monotonic() + DEADLINE
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{method}: no answer from Chromium within {DEADLINE:g} s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._dispatch(reply)

    def _dispatch(self, message: dict[str, Any]) -> None:
        page = self._pages.get(message.get("sessionId", ""))
        if page is not None and "method" in message:
            page.on_event(message)

    def open(self, url: str) -> Page:
        """A new tab that loads `url`, with every request and error recorded from before the load."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Network", "Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", {"url": url})
        ends = time.monotonic() + DEADLINE
        while not page.loaded:
            left = ends - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{url} did not load within {DEADLINE:g} s")
            self._dispatch(json.loads(self.ws.recv(timeout=left)))
        page.evaluate("new Promise(r => setTimeout(r, 50))")   # late console messages arrive meanwhile
        return page

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stderr:
                self.process.stderr.close()
        if getattr(self, "profile", None):
            shutil.rmtree(self.profile, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
