"""Reach state files, dotenv updates, port holders and doctor checks, without agent processes.

The end-to-end behaviour (real reach, up, hub processes) is in tests/e2e/test_env_doctor.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from portway.cli.common import ApiOptions
from portway.cli.doctor import Doctor, clock_skew, run_checks
from portway.cli.env import prefix, quote, update_dotenv
from portway.cli.profile import Profile, config_path
from portway.cli.reaching import (
    ReachState,
    describe_process,
    live_reaches,
    port_holders,
    process_start,
    reach_dir,
    record,
)
from tests.cli.helpers import json_of, run

pytestmark = pytest.mark.timeout(30)


def state(name: str = "prod-db", port: int = 15432, pid: int | None = None) -> ReachState:
    return ReachState(
        tunnel_id="0b6f0e4e-0000-4000-8000-000000000001", name=name, protocol="tcp",
        local_host="localhost", local_port=port, bind_addresses=["127.0.0.1", "::1"],
        connection_string=f"postgresql://ro@localhost:{port}/app",
        pid=pid or os.getpid(), process_start=process_start(pid or os.getpid()),
    )  # fmt: skip


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_reach_state_round_trips_and_stale_files_are_removed() -> None:
    path = record("default", state())
    assert path.parent == reach_dir("default") and path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["localPort"] == 15432
    stale = record("default", state("old-db", 15433, pid=dead_pid()))
    reused = record("default", state("reused-db", 15434))
    data = json.loads(reused.read_text())
    data["processStart"] = (data["processStart"] or 0) + 1  # same pid, another process
    reused.write_text(json.dumps(data))
    (reach_dir("default") / "broken.1.json").write_text("{not json")
    assert [s.name for s in live_reaches("default")] == ["prod-db"]
    assert not stale.exists() and not reused.exists()
    assert sorted(p.name for p in reach_dir("default").iterdir()) == [path.name]
    assert live_reaches("other-profile") == []


def test_env_uses_local_reach_state_without_a_hub(tmp_path: Path) -> None:
    record("default", state())
    result = run("env", "prod-db")
    assert result.output.splitlines() == [
        "PROD_DB_HOST=localhost",
        "PROD_DB_PORT=15432",
        "PROD_DB_URL=postgresql://ro@localhost:15432/app",
    ]
    variables = {
        "PROD_DB_HOST": "localhost",
        "PROD_DB_PORT": "15432",
        "PROD_DB_URL": "postgresql://ro@localhost:15432/app",
    }
    assert json_of(run("env", "prod-db", "--json")) == variables
    out = tmp_path / "app.env"
    missing = run("env", "prod-db", "cache", "--output", str(out), ok=False)
    assert missing.exit_code == 1
    assert missing.output == ("error: cache is not being reached here; run: portway reach cache\n")
    assert not out.exists()
    written = run("env", "prod-db", "--output", str(out), "--json")
    assert json_of(written) == {"output": str(out), "variables": variables}
    assert out.stat().st_mode & 0o777 == 0o600
    # For people the file is the output: one line on stderr says what was written.
    again = run("env", "prod-db", "--output", str(out))
    assert (again.stdout, again.stderr) == ("", f"Wrote 3 variables to {out}.\n")
    assert out.read_text().splitlines() == [f"{k}={v}" for k, v in variables.items()]


def test_dotenv_update_replaces_keys_in_place_and_keeps_the_rest() -> None:
    text = '# db\nexport A_HOST=old\nOTHER="x y"\nA_HOST=dup\n\nA_URL = old\n'
    values = {"A_HOST": "localhost", "A_PORT": "1", "A_URL": "redis://:p w@localhost:1"}
    assert update_dotenv(text, values) == (
        '# db\nA_HOST=localhost\nOTHER="x y"\n\nA_URL="redis://:p w@localhost:1"\nA_PORT=1\n'
    )
    assert update_dotenv("", {"K": "v"}) == "K=v\n"
    assert quote('a"$b`\\') == '"a\\"\\$b\\`\\\\"'
    assert prefix("prod.db-1") == "PROD_DB_1"


def test_port_holders_names_the_listening_process() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        holders = port_holders(port)
        assert holders.pids == (os.getpid(),) and not holders.free
    assert port_holders(port).free
    assert describe_process(os.getpid()).endswith(f"(pid {os.getpid()})")


def test_clock_skew_is_a_warning_above_a_few_seconds() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    doc = Doctor(api=ApiOptions(None, None, "default", False), profile=Profile())
    doc.hub_date, doc.local_date = now, now + timedelta(seconds=0.7)
    assert clock_skew(doc).status == "ok"
    doc.local_date = now + timedelta(seconds=42.5)
    skewed = clock_skew(doc)
    assert (
        skewed.status == "warn"
        and skewed.message == "this machine's clock is 42 s ahead of the hub's"
    )
    assert skewed.hint and "NTP" in skewed.hint


def test_doctor_without_a_profile_says_to_log_in() -> None:
    result = run("doctor", ok=False)
    assert result.exit_code == 1 and result.stderr == ""
    assert result.stdout.splitlines() == [
        f"FAIL  profile    no profile 'default' in {config_path()}",
        "                 → run: portway login --hub URL --api-key KEY",
        "skip  hub        no hub URL to check",
        "skip  api-key    not checked: no API key or no hub",
        "skip  agent-tls  no agent endpoint in the profile",
        "skip  clock      not checked: no answer from the hub",
        "ok    agent      no agent enrolled yet; portway up, expose or reach do it",
        "ok    ports      no tunnels being reached here",
    ]
    as_json = run("doctor", "--json", ok=False)
    assert as_json.exit_code == 1
    profile, *rest = json_of(as_json)
    assert profile == {
        "check": "profile",
        "status": "fail",
        "message": f"no profile 'default' in {config_path()}",
        "hint": "run: portway login --hub URL --api-key KEY",
    }
    assert [(f["check"], f["status"], f["hint"]) for f in rest] == [
        ("hub", "skip", None), ("api-key", "skip", None), ("agent-tls", "skip", None),
        ("clock", "skip", None), ("agent", "ok", None), ("ports", "ok", None),
    ]  # fmt: skip
    findings = run_checks(Doctor(api=ApiOptions(None, None, "default", True), profile=Profile()))
    assert [f.status for f in findings] == ["fail", "skip", "skip", "skip", "skip", "ok", "ok"]
