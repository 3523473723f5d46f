"""The printed tables, and the JSON written to bench/results/ with the charts beside it
(`publish`; the targets: `bench.targets`, the charts: `bench.plot`)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.targets import Results, metric, targets_table

BASELINES = ("direct", "socat", "socat-256k", "ssh", "ssh-R", "stunnel", "nginx",
             "relay/plain", "relay/tls", "mux/plain", "mux/tls")  # fmt: skip
# The reach paths (`portway_stack.REACH_PATHS`: by default, relayed, relayed in the clear).
REACH = ("reach", "reach-relayed", "reach-clear")
# What a user would pick instead of each Portway path: its row's "best peer" is whichever of
# these did best in the same run. Agent TLS on is compared with tools that encrypt too.
PEERS: dict[str, tuple[str, ...]] = {
    "public/tls": ("ssh-R", "stunnel"), "public/plain": ("socat", "socat-256k"),
    **{f"{path}/tls": ("ssh", "stunnel") for path in REACH},
    **{f"{path}/plain": ("socat", "socat-256k") for path in REACH},
    "edge/tls": ("nginx",), "edge/plain": ("nginx",),
    "share/tls": ("nginx",), "share/plain": ("nginx",),
}  # fmt: skip

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
    ("redis_get_c1", "rps", "req/s", "redis GET -c 1", True),
    ("redis_get_c1", "p99_ms", "ms", "redis GET -c 1 p99", False),
    ("redis_set_c1", "rps", "req/s", "redis SET -c 1", True),
    ("redis_get_c50", "rps", "req/s", "redis GET -c 50", True),
    ("redis_get_c50", "p99_ms", "ms", "redis GET -c 50 p99", False),
    ("redis_set_c50", "rps", "req/s", "redis SET -c 50", True),
    ("pgbench_c1", "tps", "tps", "pgbench select-only -c 1", True),
    ("pgbench_c1", "latency_avg_ms", "ms", "pgbench -c 1 latency", False),
    ("pgbench_c16", "tps", "tps", "pgbench select-only -c 16", True),
    ("fairness", "p99_ms", "ms", "echo p99 beside a bulk stream", False),
    ("fairness", "idle_p99_ms", "ms", "echo p99, no bulk", False),
]


def best_peer(results: Results, scenario: str, path: str, name: str, higher: bool
              ) -> tuple[str, float] | None:  # fmt: skip
    """The peer of `path` (`PEERS`) with the best value of this figure in the run."""
    found = [(peer, value) for peer in PEERS.get(path, ())
             if (value := metric(results, scenario, peer, name))]  # fmt: skip
    if not found:
        return None
    return (max if higher else min)(found, key=lambda item: item[1])


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


RATIO_COLUMNS = ("direct", "socat", "ssh")


def table(results: Results, paths: list[str]) -> str:
    """A Markdown table: rows are scenario x path, columns the value, its ratios to direct,
    socat and ssh -L, and to the path's best peer (`PEERS`) named."""
    lines = [
        "| scenario | path | value | x direct | x socat | x ssh -L | x best peer |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for scenario, name, unit, label, higher in ROWS:
        for path in paths:
            entry = results.get(scenario, {}).get(path)
            if entry is None:
                continue
            if "error" in entry:
                lines.append(f"| {label} | {path} | error: {entry['error'][:60]} | | | | |")
                continue
            value = metric(results, scenario, path, name)
            if value is None:
                continue
            cells = []
            for base in RATIO_COLUMNS:
                base_value = metric(results, scenario, base, name)
                cells.append("" if path == base or not base_value else f"{value / base_value:.2f}")
            peer = best_peer(results, scenario, path, name, higher)
            cells.append(f"{value / peer[1]:.2f} ({peer[0]})" if peer else "")
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
    for path, entry in results.get("session_count", {}).items():
        if "error" in entry:
            lines.append(f"| agent connections | {path} | error: {entry['error'][:60]} | | | | |")
            continue
        lines.append(
            f"| agent connections to the hub ({int(entry['streams']):,} streams) | {path} | "
            f"{_connections(entry)} | | | | |"
        )
    for tls, entry in results.get("hub_restart", {}).items():
        if "error" in entry:
            lines.append(f"| hub restart | {tls} | error: {entry['error'][:60]} | | | | |")
            continue
        lines.append(
            f"| serving after hub SIGKILL + restart | {tls} | {entry['serving_s']:.2f} s "
            f"(healthy {entry['hub_healthy_s']:.2f} s) | | | | |"
        )
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


def publish(payload: dict[str, Any], out_dir: Path, order: list[str]) -> Path:
    """Write a run's JSON (`write_json`) and its PNG charts beside it, and print its tables (the
    paths in `order`) and its targets; the JSON's path."""
    stamp = payload["timestamp"]
    written = write_json(out_dir, stamp, payload)
    machine = payload["machine"]
    print(f"\nPortway benchmark, {payload['mode']} run, {stamp}: {machine['cpu_model']}, "
          f"{machine['cores']} cores, Python {machine['versions']['python']}\n")  # fmt: skip
    print(table(payload["results"], order))
    print()
    print(targets_table(payload["targets"]))
    print(f"\nwritten to {written} in {payload['duration_s']:.0f} s")
    from bench.plot import write_charts  # matplotlib: only once the figures are in

    for chart in write_charts(payload, out_dir, stamp):
        print(f"chart {chart}")
    return written


def summary(results: Results, paths: list[str]) -> str:
    """The README's compact tables, one row per figure: first the peers and floors (one column
    each), then Portway's paths, whose cells carry their ratio to their best peer (`PEERS`)."""
    scenarios = [*(row[0] for row in ROWS), "session_count"]
    shown = [p for p in paths if any(p in results.get(s, {}) for s in scenarios)]
    baselines = [p for p in shown if p in BASELINES]
    portway = [p for p in shown if p not in BASELINES]
    return "\n\n".join(_summary(results, group) for group in (baselines, portway) if group)


def _summary(results: Results, shown: list[str]) -> str:
    lines = [
        "| | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for scenario, name, unit, label, higher in ROWS:
        cells = []
        for path in shown:
            value = metric(results, scenario, path, name)
            if value is None:
                cells.append("")
                continue
            text = _fmt(value)
            peer = best_peer(results, scenario, path, name, higher)
            if peer and name != "loss_pct":
                text += f" ({value / peer[1]:.2f}x {peer[0]})"
            cells.append(text)
        if any(cells):
            lines.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    memory = results.get("idle_memory", {})
    for role, label in (
        ("hub", "hub"),
        ("agent", "exposing agent"),
        ("reach_agent", "reaching agent"),
        ("front", "relay pair, front (hub's place)"),
        ("back", "relay pair, back (agent's place)"),
    ):
        cells = [_memory_cell(memory.get(path, {}), role) for path in shown]
        if any(cells):
            lines.append(f"| memory per idle conn, {label} (KiB) | " + " | ".join(cells) + " |")
    sessions = results.get("session_count", {})
    cells = [_connections(sessions[path]) if "streams" in sessions.get(path, {}) else ""
             for path in shown]  # fmt: skip
    if any(cells):
        lines.append("| agent connections to the hub, idle / with streams | "
                     + " | ".join(cells) + " |")  # fmt: skip
    restart = results.get("hub_restart", {})
    cells = []
    for path in shown:
        entry = restart.get(path.split("/")[-1], {}) if path.startswith("public/") else {}
        cells.append(f"{entry['serving_s']:.1f}" if "serving_s" in entry else "")
    if any(cells):
        lines.append("| serving again after hub SIGKILL (s) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _connections(entry: dict[str, Any]) -> str:
    """The session-count figures: the most connections one agent process holds to the hub
    before and with the streams open, and how the streams spread."""
    return (
        f"{entry['agent_connections_before']:.0f} / {entry['agent_connections_with_streams']:.0f}"
        f" ({int(entry['streams']):,} streams, busiest of {entry['agent_processes']:.0f} agents "
        f"{entry['busiest_agent_streams']:.0f})"
    )


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
