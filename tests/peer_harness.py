"""Drive the independent node peer CSMS (``tests/peer_csms``, ocpp-rpc, strict schemas).

Stdlib only. The control API is plain HTTP; every method that waits on the charge
point (``call``, ``wait_event``, ``disconnect``...) is a coroutine that runs the blocking
request in a thread, so a charger running in the test's own event loop can answer.
Lifecycle (``start``/``stop``) is synchronous so a module-scoped fixture can own it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

PEER_DIR = Path(__file__).resolve().parent / "peer_csms"
HOST = "127.0.0.1"
CONTROL_KEYS = frozenset({"response", "error", "noReply", "once"})
PROBLEM_TYPES = ("strictValidationFailure", "badMessage")


class PeerCsmsError(Exception):
    """The peer could not be started or its control API answered with an error."""


class PeerCallError(PeerCsmsError):
    """``call()`` failed: a CALLERROR from the charger, a timeout or a schema violation."""

    def __init__(self, action: str, error: Mapping[str, Any], validation_failure: Any) -> None:
        self.code = str(error.get("code", ""))
        self.message = str(error.get("message", ""))
        self.details = error.get("details")
        self.validation_failure = validation_failure
        extra = f"; validation failure: {validation_failure}" if validation_failure else ""
        super().__init__(f"{action}: {self.code} {self.message}{extra}")


class PeerCsms:
    """One ``node csms.js`` process on free 127.0.0.1 ports.

    ``env`` is passed through (STRICT, HEARTBEAT_INTERVAL, BASIC_AUTH_PASSWORD, ...);
    OCPP_HOST, OCPP_PORT and CTRL_PORT are always chosen here.
    """

    def __init__(self, env: Mapping[str, str] | None = None, start_timeout_s: float = 20.0):
        self._env = dict(env or {})
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.ocpp_port = 0
        self.ctrl_port = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> PeerCsms:
        """Start node and wait for ``/health``; pytest.skip if node is not installed."""
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed: peer CSMS tests need it")
        _ensure_node_modules()
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.ocpp_port, self.ctrl_port = _free_ports(2)
            self._spawn(node)
            try:
                self._wait_healthy()
                return self
            except PeerCsmsError as error:
                last_error = str(error)
                self.stop()
        raise PeerCsmsError(f"peer CSMS did not start: {last_error}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> PeerCsms:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for a charge point; it appends ``/<identity>``."""
        return f"ws://{HOST}:{self.ocpp_port}/ocpp"

    def url_for(self, identity: str) -> str:
        return f"{self.url}/{identity}"

    @property
    def log_path(self) -> str | None:
        """The node process's console output (every event, one line each)."""
        return None if self._log_file is None else self._log_file.name

    # ------------------------------------------------------------ control API (sync)

    def reset(self) -> None:
        """Default answers and an empty event log (seq keeps counting)."""
        self.request("DELETE", "/responses")
        self.request("DELETE", "/events")

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float = 10.0
    ) -> tuple[int, Any]:
        """One blocking control-API request; returns (HTTP status, decoded JSON)."""
        if self._process is None:
            raise PeerCsmsError("peer CSMS is not running")
        data = None
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.ctrl_port}{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    # ------------------------------------------------------------ control API (async)

    async def call(
        self,
        identity: str,
        action: str,
        payload: Mapping[str, Any] | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """CALL the charge point through the peer; the CALLRESULT payload or PeerCallError."""
        query = urllib.parse.urlencode({"timeout": int(timeout_s * 1000)})
        path = f"/chargepoints/{_q(identity)}/call/{_q(action)}?{query}"
        status, answer = await self._arequest("POST", path, dict(payload or {}), timeout_s + 5)
        if status == 200 and answer.get("ok"):
            return answer["result"]  # type: ignore[no-any-return]
        raise PeerCallError(action, answer.get("error") or {}, answer.get("validationFailure"))

    async def respond(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        error: str | None = None,
        description: str = "",
        no_reply: bool = False,
        once: bool = False,
    ) -> None:
        """Same meaning as ``CentralSystem.respond``.

        ``payload`` may also be the raw control body of the README
        (``{"response": ...}`` | ``{"error": {...}}`` | ``{"noReply": true}``, ``"once"``).
        """
        if payload is not None and payload.keys() and payload.keys() <= CONTROL_KEYS:
            body: dict[str, Any] = dict(payload)
        elif (payload is not None) + (error is not None) + no_reply != 1:
            raise ValueError("give exactly one of payload, error= or no_reply=True")
        elif error is not None:
            body = {"error": {"code": error, "description": description}}
        elif no_reply:
            body = {"noReply": True}
        else:
            body = {"response": dict(payload or {})}
        if once:
            body["once"] = True
        await self._ok("POST", f"/responses/{_q(action)}", body)

    async def clear_responses(self, action: str | None = None) -> None:
        await self._ok("DELETE", "/responses" + (f"/{_q(action)}" if action else ""))

    async def events(self, **query: Any) -> list[dict[str, Any]]:
        """Events matching ``query`` (identity=, type=, method=, since=, direction=...)."""
        status, answer = await self._arequest("GET", f"/events?{_query(query)}")
        return answer  # type: ignore[no-any-return]

    async def mark(self) -> int:
        """The seq of the newest event (0 if none); pass as ``since=``."""
        events = await self.events()
        return max((event["seq"] for event in events), default=0)

    async def wait_event(self, timeout_s: float = 10.0, **query: Any) -> dict[str, Any]:
        """The first event with seq > since matching ``query``; AssertionError on timeout."""
        query["timeout"] = int(timeout_s * 1000)
        status, answer = await self._arequest(
            "GET", f"/events/wait?{_query(query)}", timeout_s=timeout_s + 5
        )
        if status == 200 and answer.get("ok"):
            return answer["event"]  # type: ignore[no-any-return]
        recent = (await self.events())[-8:]
        lines = "\n  ".join(json.dumps(event)[:300] for event in recent) or "(none)"
        raise AssertionError(
            f"peer CSMS: no event {query} within {timeout_s} s; last events:\n  {lines}"
        )

    async def raw(self, identity: str, text: str) -> None:
        """Send ``text`` to the charge point as one frame, as is."""
        await self._ok("POST", f"/chargepoints/{_q(identity)}/raw", text)

    async def disconnect(self, identity: str, code: int = 1000) -> None:
        await self._ok("POST", f"/chargepoints/{_q(identity)}/disconnect?code={code}")

    async def chargepoints(self) -> list[dict[str, Any]]:
        status, answer = await self._arequest("GET", "/chargepoints")
        return answer  # type: ignore[no-any-return]

    async def assert_clean(self, identity: str, since: int = 0) -> None:
        """Fail if the peer logged a strictValidationFailure or badMessage for ``identity``."""
        problems = [
            event
            for event in await self.events(identity=identity, since=since)
            if event.get("type") in PROBLEM_TYPES
        ]
        if problems:
            lines = "\n  ".join(json.dumps(event)[:600] for event in problems)
            raise AssertionError(f"peer CSMS found problems with {identity}:\n  {lines}")

    # ------------------------------------------------------------ internals

    async def _arequest(
        self, method: str, path: str, body: Any = None, timeout_s: float = 10.0
    ) -> tuple[int, Any]:
        return await asyncio.to_thread(self.request, method, path, body, timeout_s)

    async def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self._arequest(method, path, body)
        if status != 200 or not (isinstance(answer, dict) and answer.get("ok")):
            raise PeerCsmsError(f"{method} {path} -> {status} {answer}")
        return answer

    def _spawn(self, node: str) -> None:
        env = {
            **os.environ,
            **self._env,
            "OCPP_HOST": HOST,
            "OCPP_PORT": str(self.ocpp_port),
            "CTRL_PORT": str(self.ctrl_port),
        }
        # A file, not a pipe: node logs every event and would block on a full pipe.
        self._log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="peer-csms-", suffix=".log", delete=False
        )
        self._process = subprocess.Popen(
            [node, "csms.js"],
            cwd=PEER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout_s
        pause = 0.01
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PeerCsmsError(f"node exited with {self._process.returncode}: {self._tail()}")
            try:
                status, _ = self.request("GET", "/health", timeout_s=1)
                if status == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        raise PeerCsmsError(f"no /health within {self._start_timeout_s} s: {self._tail()}")

    def _tail(self) -> str:
        if self.log_path is None:
            return ""
        return Path(self.log_path).read_text(errors="replace")[-2000:]


def _ensure_node_modules() -> None:
    """CI runs ``npm ci`` beforehand; locally do it once, under a lock shared by xdist workers."""
    if (PEER_DIR / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PeerCsmsError(f"{PEER_DIR}/node_modules is missing and npm is not installed")
    key = hashlib.sha256(str(PEER_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"peer-csms-npm-ci-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (PEER_DIR / "node_modules").is_dir():
            return  # another worker installed it while we waited
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise PeerCsmsError(f"npm ci failed in {PEER_DIR}:\n{result.stdout}\n{result.stderr}")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _query(query: Mapping[str, Any]) -> str:
    return urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
