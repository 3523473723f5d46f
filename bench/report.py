"""The printed table, the targets from issue 9, and the JSON written to bench/results/."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASELINES = ("direct", "socat", "socat-256k", "ssh")

# (scenario, metric, unit, label, higher is better)
ROWS: list[tuple[str, str, str, str, bool]] = [
    ("tcp_bulk", "gbit_s", "Gbit/s", "TCP bulk, 1 stream", True),
    ("tcp_bulk_p8", "gbit_s", "Gbit/s", "TCP bulk, -P 8", True),
    ("tcp_bulk_reverse", "gbit_s", "Gbit/s", "TCP bulk, -R", True),
    ("new_connections", "rps", "conn/s", "new connections/s", True),
    ("http_keepalive", "rps", "req/s", "HTTP keep-alive req/s", True),
    ("http_keepalive", "p50_ms", "ms", "HTTP keep-alive p50", False),
    ("http_keepalive", "p99_ms", "ms", "HTTP keep-alive p99", False),
    ("udp", "delivered_mbit_s", "Mbit/s", "UDP delivered", True),
    ("udp", "loss_pct", "%", "UDP loss", False),
]

Results = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Target:
    what: str
    scenario: str
    metric: str
    path: str
    baseline: str | None  # None: an absolute limit
    limit: float
    at_least: bool  # ratio (or value) must be >= limit; else <=


TARGETS: list[Target] = [
    Target("TCP bulk, public, TLS off >= 1.0x socat", "tcp_bulk", "gbit_s", "public/plain",
           "socat", 1.0, True),
    Target("TCP bulk, public, TLS on >= 1.2x ssh", "tcp_bulk", "gbit_s", "public/tls",
           "ssh", 1.2, True),
    Target("TCP bulk, reach, TLS off >= 0.7x socat", "tcp_bulk", "gbit_s", "reach/plain",
           "socat", 0.7, True),
    Target("TCP bulk, reach, TLS on >= 0.8x ssh", "tcp_bulk", "gbit_s", "reach/tls",
           "ssh", 0.8, True),
    Target("new conn/s, public, TLS off >= 1.0x socat", "new_connections", "rps",
           "public/plain", "socat", 1.0, True),
    Target("new conn/s, public, TLS on >= 0.5x socat", "new_connections", "rps",
           "public/tls", "socat", 0.5, True),
    Target("keep-alive req/s, edge, TLS on >= 0.5x socat", "http_keepalive", "rps",
           "edge/tls", "socat", 0.5, True),
    Target("keep-alive req/s, edge, TLS off >= 0.5x socat", "http_keepalive", "rps",
           "edge/plain", "socat", 0.5, True),
    Target("keep-alive p99, edge, TLS on <= 2x socat", "http_keepalive", "p99_ms",
           "edge/tls", "socat", 2.0, False),
    Target("keep-alive p99, edge, TLS off <= 2x socat", "http_keepalive", "p99_ms",
           "edge/plain", "socat", 2.0, False),
    Target("hub memory per idle conn, public, TLS on <= 16 KiB", "idle_memory",
           "hub_kib_per_conn", "public/tls", None, 16.0, False),
    Target("agent memory per idle conn, public, TLS on <= 16 KiB", "idle_memory",
           "agent_kib_per_conn", "public/tls", None, 16.0, False),
    Target("hub memory per idle conn, public, TLS off <= 16 KiB", "idle_memory",
           "hub_kib_per_conn", "public/plain", None, 16.0, False),
    Target("agent memory per idle conn, public, TLS off <= 16 KiB", "idle_memory",
           "agent_kib_per_conn", "public/plain", None, 16.0, False),
    Target("serving again after hub restart, TLS on <= 3 s", "hub_restart", "serving_s",
           "tls", None, 3.0, False),
    Target("serving again after hub restart, TLS off <= 3 s", "hub_restart", "serving_s",
           "plain", None, 3.0, False),
]  # fmt: skip


def _metric(results: Results, scenario: str, path: str, metric: str) -> float | None:
    found = results.get(scenario, {}).get(path, {})
    value = found.get(metric)
    return float(value) if isinstance(value, int | float) else None


def evaluate(results: Results) -> list[dict[str, Any]]:
    """Each target with the measured value or ratio and whether it is met (None: not measured)."""
    out = []
    for target in TARGETS:
        value = _metric(results, target.scenario, target.path, target.metric)
        measured: float | None = value
        if target.baseline is not None and value is not None:
            base = _metric(results, target.scenario, target.baseline, target.metric)
            measured = value / base if base else None
        met = None
        if measured is not None:
            met = measured >= target.limit if target.at_least else measured <= target.limit
        out.append({
            "target": target.what, "measured": measured, "limit": target.limit,
            "ratio": target.baseline is not None, "met": met,
        })  # fmt: skip
    return out


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: Results, paths: list[str]) -> str:
    """A Markdown table: rows are scenario x path, columns the value and ratios to baselines."""
    lines = [
        "| scenario | path | value | x direct | x socat | x socat -b 256k | x ssh |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, metric, unit, label, _higher in ROWS:
        for path in paths:
            entry = results.get(scenario, {}).get(path)
            if entry is None:
                continue
            if "error" in entry:
                lines.append(f"| {label} | {path} | error: {entry['error'][:60]} | | | | |")
                continue
            value = _metric(results, scenario, path, metric)
            if value is None:
                continue
            cells = []
            for base in BASELINES:
                base_value = _metric(results, scenario, base, metric)
                if path in BASELINES or not base_value:
                    cells.append("")
                else:
                    cells.append(f"{value / base_value:.2f}")
            lines.append(f"| {label} | {path} | {_fmt(value)} {unit} | " + " | ".join(cells) + " |")
    memory = results.get("idle_memory", {})
    for path, entry in memory.items():
        if "error" in entry:
            lines.append(f"| idle memory | {path} | error: {entry['error'][:60]} | | | | |")
            continue
        roles = [k.removesuffix("_kib_per_conn") for k in entry if k.endswith("_kib_per_conn")]
        text = ", ".join(f"{role} {entry[role + '_kib_per_conn']:.1f}" for role in roles)
        count = int(entry["connections"])
        lines.append(f"| memory per idle conn ({count:,}) | {path} | {text} KiB | | | | |")
    for tls, entry in results.get("hub_restart", {}).items():
        if "error" in entry:
            lines.append(f"| hub restart | {tls} | error: {entry['error'][:60]} | | | | |")
            continue
        lines.append(
            f"| serving after hub SIGKILL + restart | {tls} | {entry['serving_s']:.2f} s "
            f"(healthy {entry['hub_healthy_s']:.2f} s) | | | | |"
        )
    return "\n".join(lines)


def targets_table(evaluated: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | met |", "|---|---:|---|"]
    for item in evaluated:
        measured = item["measured"]
        if measured is None:
            shown, met = "not measured", "-"
        else:
            shown = f"{measured:.2f}x" if item["ratio"] else _fmt(measured)
            met = "yes" if item["met"] else "**no**"
        lines.append(f"| {item['target']} | {shown} | {met} |")
    return "\n".join(lines)


def _version(args: list[str], pattern: str = r"[\d.]+[\w.+~-]*") -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = done.stdout + done.stderr
    found = re.search(pattern, text)
    if not found:
        return text.strip()[:80]
    return found[1] if found.groups() else found[0]


def machine_info() -> dict[str, Any]:
    """CPU model, core count, kernel and the versions of everything measured."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import portway

    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    from importlib.metadata import PackageNotFoundError, version

    try:
        uvloop_version = version("uvloop")
    except PackageNotFoundError:
        uvloop_version = "missing"

    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "versions": {
            "python": platform.python_version(),
            "portway": version("portway"),
            "portway_commit": commit,
            "portway_source": str(Path(portway.__file__).parent),
            "uvloop": uvloop_version,
            "iperf3": _version(["iperf3", "--version"], r"iperf ([\d.]+)"),
            "wrk": _version(["wrk", "--version"], r"wrk \S+"),
            "socat": _version(["socat", "-V"], r"socat version ([\d.]+)"),
            "ssh": _version(["ssh", "-V"], r"OpenSSH_[\w.]+"),
            "openssl": _version([sys.executable, "-c", "import ssl; print(ssl.OPENSSL_VERSION)"],
                                r"OpenSSL [\w.]+"),
        },
    }  # fmt: skip


def write_json(out_dir: Path, stamp: str, payload: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def summary(results: Results, paths: list[str]) -> str:
    """The README's compact table: one row per figure, one column per path; Portway cells
    carry their ratio to socat with its default buffer."""
    shown = [p for p in paths if any(p in results.get(s, {}) for s, *_ in ROWS)]
    lines = [
        "| | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for scenario, metric, unit, label, _higher in ROWS:
        cells = []
        for path in shown:
            value = _metric(results, scenario, path, metric)
            if value is None:
                cells.append("")
                continue
            text = _fmt(value)
            socat = _metric(results, scenario, "socat", metric)
            if path not in BASELINES and socat and metric != "loss_pct":
                text += f" ({value / socat:.2f}x)"
            cells.append(text)
        if any(cells):
            lines.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    memory = results.get("idle_memory", {})
    for role, label in (
        ("hub", "hub"),
        ("agent", "exposing agent"),
        ("reach_agent", "reaching agent"),
        ("back", "bare relay, back (TLS server end)"),
        ("front", "bare relay, front (TLS client end)"),
    ):
        cells = [_memory_cell(memory.get(path, {}), role) for path in shown]
        if any(cells):
            lines.append(f"| memory per idle conn, {label} (KiB) | " + " | ".join(cells) + " |")
    restart = results.get("hub_restart", {})
    cells = []
    for path in shown:
        entry = restart.get(path.split("/")[-1], {}) if path.startswith("public/") else {}
        cells.append(f"{entry['serving_s']:.1f}" if "serving_s" in entry else "")
    if any(cells):
        lines.append("| serving again after hub SIGKILL (s) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _memory_cell(entry: dict[str, Any], role: str) -> str:
    value = entry.get(f"{role}_kib_per_conn")
    if not isinstance(value, int | float):
        return ""
    return f"{value:.1f} ({int(entry['connections']):,} conns)"


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report RESULT.json`: print the README summary and targets again."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("result", type=Path)
    args = parser.parse_args(argv)
    payload = json.loads(args.result.read_text())
    results: Results = payload["results"]
    print(summary(results, payload["paths"]))
    print()
    print(table(results, payload["paths"]))
    print()
    print(targets_table(payload["targets"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
