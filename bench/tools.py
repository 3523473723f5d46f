"""Load generators: iperf3 (TCP bulk, UDP), wrk (HTTP), redis-benchmark and pgbench (real
database clients), run and parsed into numbers."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from bench.procs import wait_for

UNITS_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
START_WITHIN = 5.0  # seconds an iperf3 test may take to start; see `_iperf3`


class ToolError(RuntimeError):
    """A load generator failed or printed something we cannot read."""


class NotStarted(ToolError):
    """iperf3 failed before its first interval: nothing was measured, so it may run again."""


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects for one service on one path."""

    port: int
    host: str = "127.0.0.1"
    host_header: str | None = None  # the edge routes public URLs by Host
    prefix: str = "/"  # a share's path prefix, /s/<token>/

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"


def _run(args: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{args[0]} timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise ToolError(f"{' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done.stdout


def iperf3_tcp(
    endpoint: Endpoint, seconds: float, streams: int = 1, reverse: bool = False
) -> dict[str, float]:
    """Goodput of an iperf3 TCP test, in Gbit/s, as the receiver counted it."""
    args = ["iperf3", "-c", endpoint.host, "-p", str(endpoint.port), "-J", "-t", f"{seconds:g}"]
    args += ["-P", str(streams), "--connect-timeout", "5000"]
    if reverse:
        args.append("-R")
    report = _iperf3(args, seconds)
    received = report["end"]["sum_received"]
    sent = report["end"]["sum_sent"]
    return {
        "gbit_s": float(received["bits_per_second"]) / 1e9,
        "retransmits": float(sent.get("retransmits", 0)),
    }


def iperf3_udp(
    endpoint: Endpoint, seconds: float, rate_mbit: float, size: int = 1400
) -> dict[str, float]:
    """Delivered rate (Mbit/s) and loss (%) of an iperf3 UDP test at a fixed offered rate."""
    args = ["iperf3", "-c", endpoint.host, "-p", str(endpoint.port), "-J", "-u"]
    args += ["-t", f"{seconds:g}", "-b", f"{rate_mbit:g}M", "-l", str(size)]
    args += ["--connect-timeout", "5000"]
    report = _iperf3(args, seconds)
    end = report["end"]
    received = end.get("sum_received") or end["sum"]
    sent = end.get("sum_sent") or end["sum"]
    packets = float(sent.get("packets", 0)) or float(received.get("packets", 0))
    lost = float(received.get("lost_packets", 0))
    delivered = float(received["bits_per_second"])
    if "lost_percent" in received:
        loss = float(received["lost_percent"])
    else:
        loss = 100.0 * lost / packets if packets else 0.0
    return {
        "offered_mbit_s": rate_mbit,
        "delivered_mbit_s": delivered / 1e6,
        "loss_pct": loss,
        "jitter_ms": float(received.get("jitter_ms", 0.0)),
    }


def _iperf3(args: list[str], seconds: float) -> dict[str, Any]:
    """Run an iperf3 client; try again when the test failed before measuring anything. The
    server takes one control connection at a time, and any connection counts: the exposing
    agents' liveness check of the target (a bare connect every 15 s) can be that one just as a
    test starts. The client then reads "the server is busy", "unable to receive control
    message" or "control socket has closed unexpectedly", and its report has no interval.
    Tried until a test starts, for up to `START_WITHIN` seconds; then the last error is raised."""
    failed: list[NotStarted] = []

    def attempt() -> dict[str, Any] | None:
        try:
            return _iperf3_once(args, seconds)
        except NotStarted as exc:
            failed[:] = [exc]
            return None

    try:
        return wait_for(attempt, timeout=START_WITHIN, what="an iperf3 test to start", step=0.2)
    except TimeoutError:
        raise failed[-1] from None


def _iperf3_once(args: list[str], seconds: float) -> dict[str, Any]:
    timeout = seconds + 30
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"iperf3 timed out after {timeout:.0f}s") from exc
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise ToolError(f"iperf3 printed no JSON: {(done.stdout + done.stderr)[:500]}") from exc
    if "error" in report or done.returncode != 0:
        error = f"iperf3: {report.get('error') or f'exited {done.returncode}'}"
        raise ToolError(error) if report.get("intervals") else NotStarted(error)
    return report


def wrk(
    endpoint: Endpoint, seconds: float, connections: int, close: bool = False, threads: int = 2
) -> dict[str, float]:
    """Requests/s, latency percentiles (ms) and errors of a wrk run against `endpoint`."""
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s"]
    args += ["--latency", "--timeout", "5s"]
    if endpoint.host_header:
        args += ["-H", f"Host: {endpoint.host_header}"]
    if close:
        args += ["-H", "Connection: close"]
    args.append(endpoint.url)
    return parse_wrk(_run(args, timeout=seconds + 30))


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not match:
        raise ToolError(f"cannot read wrk latency {value!r}")
    return float(match[1]) * UNITS_SECONDS[match[2]]


def parse_wrk(text: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise ToolError(f"cannot read wrk output: {text[:500]}")
    result = {"rps": float(rps[1]), "requests": float(total[1])}
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE)
        if found:
            result[f"p{pct}_ms"] = _seconds(found[1]) * 1000
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    result["socket_errors"] = float(sum(int(n) for n in errors.groups())) if errors else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non_2xx"] = float(non2xx[1]) if non2xx else 0.0
    return result


def redis_benchmark(endpoint: Endpoint, test: str, clients: int, requests: int) -> dict[str, float]:
    """Requests/s and latency (ms) of `redis-benchmark -t test -c clients -n requests`."""
    args = ["redis-benchmark", "-h", endpoint.host, "-p", str(endpoint.port), "-t", test]
    args += ["-c", str(clients), "-n", str(requests), "--csv"]
    return parse_redis_benchmark(_run(args, timeout=120), test)


def parse_redis_benchmark(text: str, test: str) -> dict[str, float]:
    """The CSV row of `test` (redis-benchmark 7 prints a header and one row per test)."""
    rows = [line.replace('"', "").split(",") for line in text.strip().splitlines()]
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise ToolError(f"cannot read redis-benchmark output: {text[:500]}")
    header = rows[0]
    for row in rows[1:]:
        if row[0].lower() == test.lower() and len(row) == len(header):
            values = dict(zip(header[1:], map(float, row[1:]), strict=True))
            return {
                "rps": values["rps"],
                "avg_ms": values["avg_latency_ms"],
                "p50_ms": values["p50_latency_ms"],
                "p99_ms": values["p99_latency_ms"],
            }
    raise ToolError(f"redis-benchmark printed no {test} row: {text[:500]}")


def pgbench(endpoint: Endpoint, clients: int, seconds: float, user: str) -> dict[str, float]:
    """Transactions/s and average latency (ms) of select-only `pgbench -S` for `seconds`."""
    args = ["pgbench", "-h", endpoint.host, "-p", str(endpoint.port), "-U", user, "-n", "-S"]
    args += ["-c", str(clients), "-j", str(min(clients, 2)), "-T", str(max(1, round(seconds)))]
    return parse_pgbench(_run([*args, "postgres"], timeout=seconds + 60))


def parse_pgbench(text: str) -> dict[str, float]:
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", text, re.MULTILINE)
    latency = re.search(r"^latency average = ([\d.]+) ms", text, re.MULTILINE)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.MULTILINE)
    if not tps or not latency:
        raise ToolError(f"cannot read pgbench output: {text[:500]}")
    return {
        "tps": float(tps[1]),
        "latency_avg_ms": float(latency[1]),
        "failed": float(failed[1]) if failed else 0.0,
    }
