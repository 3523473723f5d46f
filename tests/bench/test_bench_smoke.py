"""The benchmark's smoke run (`python -m bench --smoke`): every scenario for about a second on
the direct path, the peers (ssh -R, stunnel, nginx), the bare TLS relay pairs of data planes
v1 and v2 and Portway's public path with agent TLS (the fairness and session-count scenarios
where they run: the mux pair and the public path), so `make bench` cannot rot.

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

from portway.testing.postgres import find_pg_bin
from portway.testing.programs import require_program

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("tcp_bulk", "tcp_bulk_p8", "tcp_bulk_reverse", "new_connections", "http_keepalive",
             "udp")  # fmt: skip
DATABASE_SCENARIOS = ("redis_get_c1", "redis_set_c1", "redis_get_c50", "redis_set_c50",
                      "pgbench_c1", "pgbench_c16")  # fmt: skip
PRIMARY = {
    "tcp_bulk": "gbit_s", "tcp_bulk_p8": "gbit_s", "tcp_bulk_reverse": "gbit_s",
    "new_connections": "rps", "http_keepalive": "rps", "udp": "delivered_mbit_s",
    "redis_get_c1": "rps", "redis_set_c1": "rps", "redis_get_c50": "rps",
    "redis_set_c50": "rps", "pgbench_c1": "tps", "pgbench_c16": "tps",
}  # fmt: skip
PROGRAMS = {"iperf3": None, "wrk": None, "socat": None, "ssh": "openssh-client",
            "sshd": "openssh-server", "stunnel4": None, "nginx": "nginx-light",
            "redis-server": None, "redis-benchmark": "redis-tools", "pgbench": "postgresql-client",
            "initdb": "postgresql"}  # fmt: skip


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


def require_programs() -> None:
    for program, package in PROGRAMS.items():
        if program == "sshd" and Path("/usr/sbin/sshd").exists():
            continue
        if program == "nginx" and Path("/usr/sbin/nginx").exists():
            continue
        if program == "initdb" and find_pg_bin():
            continue
        require_program(program, package=package)


def assert_measured(results: dict[str, Any], scenario: str, path: str) -> dict[str, Any]:
    metrics: dict[str, Any] = results[scenario][path]
    assert "error" not in metrics, (scenario, path, metrics)
    assert number(metrics[PRIMARY[scenario]]) > 0, (scenario, path, metrics)
    assert all(number(v) >= 0 for v in metrics.values()), (scenario, path, metrics)
    return metrics


@pytest.mark.timeout(420)
def test_smoke_run_measures_every_scenario_and_writes_json(tmp_path: Path) -> None:
    require_programs()
    done = run_smoke(tmp_path, timeout=390)
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
    assert "setup" not in results, results.get("setup")  # every peer started
    for scenario in SCENARIOS:
        for path in ("direct", "public/tls"):
            assert_measured(results, scenario, path)
    for metric in ("p50_ms", "p99_ms"):
        assert number(results["http_keepalive"]["public/tls"][metric]) > 0
    for scenario in SCENARIOS[:-1]:  # the relay pairs, ssh -R and stunnel carry TCP only
        for path in ("relay/tls", "mux/tls", "ssh-R", "stunnel"):
            assert_measured(results, scenario, path)
    for path in ("relay/tls", "mux/tls", "ssh-R", "stunnel", "nginx"):
        assert path not in results["udp"]
    for scenario in ("new_connections", "http_keepalive"):  # nginx: the edge's peer, HTTP only
        assert_measured(results, scenario, "nginx")
    assert "nginx" not in results["tcp_bulk"]
    # The real database clients through every path that carries TCP.
    for scenario in DATABASE_SCENARIOS:
        for path in ("direct", "ssh-R", "stunnel", "mux/tls", "public/tls"):
            metrics = assert_measured(results, scenario, path)
            latency = "p99_ms" if scenario.startswith("redis") else "latency_avg_ms"
            assert number(metrics[latency]) > 0, (scenario, path, metrics)
    assert number(results["pgbench_c16"]["public/tls"]["failed"]) == 0

    # The curves: keep-alive by concurrency, RSS by idle connections.
    curves = report["curves"]
    for path in ("direct", "nginx", "mux/tls", "public/tls"):
        points = curves["keepalive_by_connections"][path]
        assert [p["x"] for p in points] == [1, 100], points
        assert all(number(p["rps"]) > 0 and number(p["p99_ms"]) > 0 for p in points)
    assert "ssh-R" not in curves["keepalive_by_connections"]
    idle = curves["hub_rss_by_idle"]["public/tls"]
    assert idle and all(number(p["x"]) > 0 and number(p["hub_rss_mib"]) > 0 for p in idle)
    assert set(report["curves_meta"]) == set(curves)

    for pair in ("relay/tls", "mux/tls"):
        relay_memory = results["idle_memory"][pair]
        assert number(relay_memory["connections"]) > 0
        for role in ("front", "back"):
            assert number(relay_memory[f"{role}_rss_after_mib"]) > 0
    memory = results["idle_memory"]["public/tls"]
    assert number(memory["connections"]) > 0
    for role in ("hub", "agent"):
        number(memory[f"{role}_kib_per_conn"])  # RSS deltas may be ~0 for a few connections
        assert number(memory[f"{role}_rss_after_mib"]) > 0
    # Echo round trips beside a bulk stream: on the mux pair with one session, and public/tls.
    assert set(results["fairness"]) == {"mux/tls", "public/tls"}
    for path in ("mux/tls", "public/tls"):
        fair = results["fairness"][path]
        assert "error" not in fair, (path, fair)
        for prefix in ("", "idle_"):
            assert number(fair[f"{prefix}round_trips"]) > 0, (path, fair)
            assert 0 < number(fair[f"{prefix}p50_ms"]) <= number(fair[f"{prefix}p99_ms"])
            assert number(fair[f"{prefix}p99_ms"]) <= number(fair[f"{prefix}max_ms"])
        assert number(fair["bulk_gbit_s"]) > 0, (path, fair)
    assert number(results["fairness"]["public/tls"]["same_agent_process"]) in (0, 1)
    # The agents' sessions counted from /proc, with 200 streams in a smoke run.
    assert set(results["session_count"]) == {"public/tls"}
    sessions = results["session_count"]["public/tls"]
    assert "error" not in sessions, sessions
    assert 0 < number(sessions["streams"]) <= number(sessions["asked"]) == 200
    assert number(sessions["agent_processes"]) >= 1
    for key in ("before", "with_streams", "min_with_streams"):
        assert number(sessions[f"agent_connections_{key}"]) >= 1, sessions
    assert number(sessions["busiest_agent_streams"]) > 0
    restart = results["hub_restart"]["tls"]
    # Probed in parallel from the spawn: tunnels may serve before the API is healthy.
    assert number(restart["hub_healthy_s"]) > 0
    assert 0 < number(restart["public_serving_s"]) <= number(restart["serving_s"])
    assert {t["target"] for t in report["targets"]} >= {
        "new conn/s, public, TLS on >= 0.5x socat",
        "serving again after hub restart, TLS on <= 3 s",
        "redis GET -c 1, reach >= 0.6x ssh -L",
        "echo p99 beside a bulk stream, public <= 5 ms",
        "agent connections to the hub at 1,000 streams, public = 2",
    }
    # The printed table carries the same figures, and the charts were drawn.
    assert "| TCP bulk, 1 stream | public/tls |" in done.stdout
    assert "| redis GET -c 1 | public/tls |" in done.stdout
    assert "| echo p99 beside a bulk stream | mux/tls |" in done.stdout
    assert "| agent connections to the hub (" in done.stdout
    stamp = report["timestamp"]
    for chart in ("ratios", "keepalive_by_connections", "hub_rss_by_idle"):
        png = tmp_path / f"{stamp}-{chart}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
