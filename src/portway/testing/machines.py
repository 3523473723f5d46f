"""End-to-end test machines: each has its own Portway profile and runs real `portway` processes.

hub = HubProcess(tmp / "hub"); hub.start()
laptop = Machine(tmp / "laptop", hub); laptop.login()
server = laptop.start("reach", "prod-db", "--port", "15432")
server.wait_for("Reaching prod-db")
...
laptop.stop_all()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from portway.testing.hub import HubProcess


class Background:
    """A `portway` command running in the background with its output in files."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.args = args
        self.out_path = logs.with_suffix(".out")
        self.err_path = logs.with_suffix(".err")
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, text=True)

    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Wait until `text` appears in the output; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[3:]} exited {self.proc.returncode}:\n{out}")
            time.sleep(0.05)
        raise TimeoutError(f"no {text!r} from {self.args[3:]} in {timeout}s:\n{self.output()}")

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            if sig != signal.SIGCONT:
                self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGINT
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Machine:
    """One user's machine: a profile directory and the processes started from it."""

    def __init__(self, home: Path, hub: HubProcess) -> None:
        self.home = home
        self.hub = hub
        self.home.mkdir(parents=True, exist_ok=True)
        self.running: list[Background] = []
        self._count = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTWAY_")}
        env["PORTWAY_CONFIG_DIR"] = str(self.home)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "portway", *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), env=self.env(), capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"portway {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def login(self, api_key: str | None = None) -> None:
        self.run("login", "--hub", self.hub.api_url, "--api-key", api_key or self.hub.admin_key)

    def start(self, *args: str) -> Background:
        self._count += 1
        process = Background(self.command(*args), self.env(), self.home / f"proc-{self._count}")
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            process.stop()
        self.running.clear()
