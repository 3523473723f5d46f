"""Hubs for tests: a real `portway hub` subprocess, or an in-process `Hub` on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from portway.domain.clock import Clock
from portway.hub.core.config import load_hub_config
from portway.hub.server import Hub
from portway.testing.ports import free_port


def hub_flags(data_dir: Path, **overrides: str) -> dict[str, str]:
    """Flags for a hub on fresh loopback ports with its data in `data_dir`."""
    flags = {
        "data_dir": str(data_dir),
        "api_listen": f"127.0.0.1:{free_port()}",
        "edge_listen": f"127.0.0.1:{free_port()}",
        "agent_listen": f"127.0.0.1:{free_port()}",
    }
    flags.update(overrides)
    return flags


class HubProcess:
    """`portway hub` as a child process. Use `start()` (or `spawn()`, then `wait_healthy()`),
    then `stop()` (SIGTERM) or `kill()`."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None, **flags: str) -> None:
        self.flags = hub_flags(data_dir, **flags)
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.stdout_path = data_dir.parent / f"{data_dir.name}-hub.out"
        self.stderr_path = data_dir.parent / f"{data_dir.name}-hub.err"

    @property
    def api_url(self) -> str:
        return "http://" + self.flags["api_listen"]

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin-api-key").read_text().strip()

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "portway", "hub"]
        for key, value in self.flags.items():
            args += ["--" + key.replace("_", "-"), value]
        return args

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until /healthz answers 200."""
        self.spawn()
        self.wait_healthy(timeout)

    def spawn(self) -> None:
        """Start the process and return at once; `wait_healthy()` waits for the API."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=err, text=True, env=self.env
            )

    def healthy(self, timeout: float = 1.0) -> bool:
        """Whether /healthz answers 200 now; raises RuntimeError when the process has exited.

        Plain `http.client`, not httpx: cheap enough to poll often (an httpx client builds an
        SSL context each time), which matters when a benchmark polls while timing the hub.
        """
        assert self.proc is not None, "hub not spawned"
        if self.proc.poll() is not None:
            raise RuntimeError(f"hub exited with {self.proc.returncode}: {self.stderr()}")
        host, _, port = self.flags["api_listen"].rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until /healthz answers 200; kill the process if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy(timeout=1):
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"hub did not become healthy in {timeout}s: {self.stderr()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the hub and wait for it to exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.asynccontextmanager
async def running_hub(
    data_dir: Path, *, clock: Clock | None = None, **flags: str
) -> AsyncIterator[Hub]:
    """An in-process hub on free loopback ports, stopped when the block ends."""
    config = load_hub_config(hub_flags(data_dir, **flags), {})
    hub = Hub(config, clock=clock)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


class HubThread:
    """An in-process hub on its own event loop in a background thread, for synchronous tests.

    ``with HubThread(tmp_path / "hub") as hub: ...`` gives `hub.api_url` and `hub.admin_key`.
    """

    def __init__(self, data_dir: Path, **flags: str) -> None:
        self.config = load_hub_config(hub_flags(data_dir, **flags), {})
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="hub-thread", daemon=True
        )
        self.hub = Hub(self.config)

    def __enter__(self) -> HubThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.hub.start(), self._loop).result(timeout=60)
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.hub.stop(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def api_url(self) -> str:
        return self.hub.api_url

    @property
    def admin_key(self) -> str:
        return self.config.admin_key_file.read_text().strip()
