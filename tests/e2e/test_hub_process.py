"""`portway hub` as users run it: a real process on free ports, driven over HTTP, then signalled."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from portway.testing.hub import HubProcess

pytestmark = pytest.mark.e2e

CLEAN_EXIT_SECONDS = 5


def _assert_clean_exit(hub: HubProcess, sig: int) -> None:
    started = time.monotonic()
    code = hub.stop(sig)
    assert time.monotonic() - started < CLEAN_EXIT_SECONDS
    assert code == 0, hub.stderr()
    err = hub.stderr()
    assert "Traceback" not in err
    assert "Task was destroyed" not in err
    assert "never awaited" not in err


def test_first_start_prints_key_and_next_steps(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data")
    hub.start()
    try:
        out = hub.stdout()
        key_file = tmp_path / "data" / "admin-api-key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key in out
        assert f"{hub.api_url}/docs" in out
        assert f"portway login --hub {hub.api_url} --api-key $(cat {key_file})" in out
        auth = {"Authorization": f"Bearer {key}"}
        created = httpx.post(f"{hub.api_url}/v1/agents", json={"name": "e2e"}, headers=auth)
        assert created.status_code == 201, created.text
        assert httpx.get(f"{hub.api_url}/openapi.json").json()["info"]["title"] == "Portway"
        assert httpx.get(f"{hub.api_url}/docs").status_code == 200
    finally:
        _assert_clean_exit(hub, signal.SIGTERM)

    # Second start: same store, key not reprinted, same key still valid, data kept.
    again = HubProcess(tmp_path / "data")
    again.start()
    try:
        out = again.stdout()
        assert key not in out
        assert str(key_file) in out
        listed = httpx.get(f"{again.api_url}/v1/agents", headers=auth).json()["items"]
        assert [a["name"] for a in listed] == ["e2e"]
    finally:
        _assert_clean_exit(again, signal.SIGINT)


def test_clean_shutdown_with_requests_in_flight(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data")
    hub.start()
    auth = {"Authorization": f"Bearer {hub.admin_key}"}
    # A kept-alive client connection must not hold the hub open past the grace period.
    with httpx.Client(headers=auth) as client:
        assert client.get(f"{hub.api_url}/v1/agents").status_code == 200
        _assert_clean_exit(hub, signal.SIGTERM)


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hub = HubProcess(tmp_path / "data", api_listen=f"127.0.0.1:{port}")
        with pytest.raises(RuntimeError, match="exited"):
            hub.start(timeout=20)
    err = hub.stderr()
    assert "cannot start the hub" in err and "Traceback" not in err


def test_bad_flag_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "portway", "hub", "--data-dir", str(tmp_path),
         "--port-range", "9-1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --port-range: port range '9-1' starts after it ends"
    ]


@pytest.mark.postgres
def test_hub_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    hub = HubProcess(tmp_path / "data", database_url=postgres_url)
    hub.start()
    try:
        assert "Store:      postgresql" in hub.stdout()
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        created = httpx.post(f"{hub.api_url}/v1/workspaces", json={"name": "pg"}, headers=auth)
        assert created.status_code == 201, created.text
        assert httpx.get(f"{hub.api_url}/healthz").json()["store"] == "ok"
    finally:
        _assert_clean_exit(hub, signal.SIGTERM)
