"""The benchmark's smoke run (`python -m bench --smoke`): every scenario for about a second on
the direct path, the bare TLS relay pair and Portway's public path with agent TLS, so
`make bench` cannot rot.

No performance target is asserted here; only that every figure is a well-formed number and the
JSON report is written. The targets are checked by reading a full `make bench` run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from portway.testing.programs import require_program

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("tcp_bulk", "tcp_bulk_p8", "tcp_bulk_reverse", "new_connections", "http_keepalive",
             "udp")  # fmt: skip
PRIMARY = {
    "tcp_bulk": "gbit_s", "tcp_bulk_p8": "gbit_s", "tcp_bulk_reverse": "gbit_s",
    "new_connections": "rps", "http_keepalive": "rps", "udp": "delivered_mbit_s",
}  # fmt: skip


def pythonpath() -> str:
    """The repository root (for `bench`) ahead of whatever PYTHONPATH was given."""
    given = os.environ.get("PYTHONPATH")
    return f"{ROOT}{os.pathsep}{given}" if given else str(ROOT)


def run_smoke(out: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the smoke benchmark; on timeout SIGTERM it (it then stops all it started)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONPATH": pythonpath()},
    )  # fmt: skip
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
        pytest.fail(f"the smoke benchmark took over {timeout:.0f}s:\n{stdout[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "")


def number(value: Any) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    assert math.isfinite(value), value
    return float(value)


@pytest.mark.timeout(200)
def test_smoke_run_measures_every_scenario_and_writes_json(tmp_path: Path) -> None:
    for program in ("iperf3", "wrk", "socat"):  # the smoke run has no ssh path
        require_program(program)
    done = run_smoke(tmp_path, timeout=170)
    assert done.returncode == 0, done.stdout[-4000:]
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1, done.stdout[-2000:]
    report = json.loads(written[0].read_text())

    assert report["mode"] == "smoke"
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["cpu_model"]
    for tool in ("python", "portway", "iperf3", "wrk", "socat"):
        assert report["machine"]["versions"][tool] not in ("", "missing"), tool
    results = report["results"]
    for scenario in SCENARIOS:
        for path in ("direct", "public/tls"):
            metrics = results[scenario][path]
            assert "error" not in metrics, (scenario, path, metrics)
            assert number(metrics[PRIMARY[scenario]]) > 0, (scenario, path, metrics)
            assert all(number(v) >= 0 for v in metrics.values()), (scenario, path, metrics)
    for metric in ("p50_ms", "p99_ms"):
        assert number(results["http_keepalive"]["public/tls"][metric]) > 0
    for scenario in SCENARIOS[:-1]:  # the relay pair carries TCP only
        metrics = results[scenario]["relay/tls"]
        assert "error" not in metrics, (scenario, metrics)
        assert number(metrics[PRIMARY[scenario]]) > 0, (scenario, metrics)
    assert "relay/tls" not in results["udp"]
    relay_memory = results["idle_memory"]["relay/tls"]
    assert number(relay_memory["connections"]) > 0
    for role in ("front", "back"):
        assert number(relay_memory[f"{role}_rss_after_mib"]) > 0
    memory = results["idle_memory"]["public/tls"]
    assert number(memory["connections"]) > 0
    for role in ("hub", "agent"):
        number(memory[f"{role}_kib_per_conn"])  # RSS deltas may be ~0 for a few connections
        assert number(memory[f"{role}_rss_after_mib"]) > 0
    restart = results["hub_restart"]["tls"]
    # Probed in parallel from the spawn: tunnels may serve before the API is healthy.
    assert number(restart["hub_healthy_s"]) > 0
    assert 0 < number(restart["public_serving_s"]) <= number(restart["serving_s"])
    assert {t["target"] for t in report["targets"]} >= {
        "new conn/s, public, TLS on >= 0.5x socat",
        "serving again after hub restart, TLS on <= 3 s",
    }
    # The printed table carries the same figures.
    assert "| TCP bulk, 1 stream | public/tls |" in done.stdout
