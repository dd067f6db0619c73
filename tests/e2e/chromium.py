"""Drive Debian's headless Chromium from Python over the DevTools protocol, with no extra package.

Chromium started with ``--remote-debugging-pipe`` reads protocol messages on fd 3 and writes replies on
fd 4, each a JSON text ended by a NUL byte. No port is opened and no websocket library is needed.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]


class BrowserError(RuntimeError):
    pass


def why_unusable(binary: Path = CHROMIUM) -> str | None:
    """Why Chromium cannot be used here, or None when it can."""
    if not binary.exists():
        return f"{binary} is not installed (Debian package 'chromium'; .ci/run installs it as root)"
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary} --version failed: {e}"
    if out.returncode != 0:
        return f"{binary} --version exited {out.returncode}: {out.stderr.strip()[:200]}"
    return None


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or more, so placing the pipes at 3 and 4 in the child clobbers nothing."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium with a fresh profile; ``page()`` opens a tab to drive."""

    def __init__(self, binary: Path = CHROMIUM, window: tuple[int, int] = (1280, 900)) -> None:
        self.profile = tempfile.mkdtemp(prefix="simtrain-chromium-")
        to_browser_r, to_browser_w = map(_high_fd, os.pipe())
        from_browser_r, from_browser_w = map(_high_fd, os.pipe())

        def place_pipes() -> None:  # runs in the child, before exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [
            str(binary),
            *FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={window[0]},{window[1]}",
        ]
        self.process = subprocess.Popen(
            [*args, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4, to_browser_r, from_browser_w),
            preexec_fn=place_pipes,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._ids = itertools.count(1)
        self._waiting: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        self.send("Browser.getVersion", timeout_s=30)

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                waiter = self._waiting.pop(message["id"], None) if "id" in message else None
                if waiter is not None:
                    waiter.put(message)
                else:
                    self.events.put(message)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; a protocol error raises BrowserError."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        reply_box: queue.Queue = queue.Queue()
        self._waiting[message_id] = reply_box
        with self._lock:
            self._out.write(json.dumps(message).encode() + b"\0")
        try:
            reply = reply_box.get(timeout=timeout_s)
        except queue.Empty:
            raise BrowserError(f"no reply to {method} within {timeout_s}s") from None
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout_s=5)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self._out, self._in):
            stream.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition, take a screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30
    ) -> dict[str, Any]:
        return self.browser.send(method, params, self.session, timeout_s)

    def goto(self, url: str, timeout_s: float = 30) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout_s)

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises are awaited); a thrown error raises."""
        reply = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw: {text}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30, poll_s: float = 0.1) -> Any:
        """Poll until the expression is truthy; return its value (True for a DOM node, which has no JSON)."""
        deadline = time.monotonic() + timeout_s
        wrapped = f"(() => {{ const v = ({expression}); return v instanceof Node ? true : v; }})()"
        while True:
            try:
                value, error = self.eval(wrapped), None
            except BrowserError as e:  # e.g. the element is not there yet
                value, error = None, e
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still falsy after {timeout_s}s: {expression} (last error: {error})")
            time.sleep(poll_s)

    def js_errors(self) -> list[str]:
        """Uncaught exceptions the page has thrown so far (drains the browser's event queue)."""
        errors = []
        while True:
            try:
                event = self.browser.events.get_nowait()
            except queue.Empty:
                return errors
            if event.get("method") == "Runtime.exceptionThrown" and event.get("sessionId") == self.session:
                details = event["params"]["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description") or details.get("text", "?"))

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
