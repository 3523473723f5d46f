"""The targets `make bench` checks: issue 9's (data plane v1), data plane v2's and issue 20's
(the direct path and end-to-end reach). `bench.run` evaluates them after a run.

A target is one figure of one path, either against a limit or as a ratio to a baseline
measured in the same run (another path, or another scenario of the same path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Target:
    what: str
    scenario: str
    metric: str
    path: str
    baseline: str | None  # a path; None: an absolute limit (or `baseline_scenario` alone)
    limit: float
    at_least: bool  # ratio (or value) must be >= limit; else <=
    baseline_scenario: str | None = None  # the baseline's scenario when not `scenario`
    group: str = "v1"
    exact: bool = False  # the value must equal `limit` (`at_least` is then ignored)
    # (metric, minimum): measured only when the same entry's `metric` reached `minimum` (a
    # target stated at a load: a smaller run says nothing about it).
    given: tuple[str, float] | None = None


def _v2(what: str, scenario: str, metric: str, path: str, baseline: str | None, limit: float,
        at_least: bool = True, baseline_scenario: str | None = None, exact: bool = False,
        given: tuple[str, float] | None = None) -> Target:  # fmt: skip
    return Target(what, scenario, metric, path, baseline, limit, at_least, baseline_scenario,
                  "v2", exact, given)  # fmt: skip


def _e2e(what: str, scenario: str, metric: str, path: str, baseline: str, limit: float
         ) -> Target:  # fmt: skip
    return Target(what, scenario, metric, path, baseline, limit, True, group="e2e")


GROUPS = {"v1": "issue 9 (data plane v1)", "v2": "data plane v2 (streams over sessions)",
          "e2e": "direct path and end-to-end reach (issue 20)"}  # fmt: skip

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
    # Data plane v2 (issue "Data plane v2"): every figure with agent TLS on.
    _v2("redis GET -c 1, reach >= 0.6x ssh -L", "redis_get_c1", "rps", "reach/tls", "ssh", 0.6),
    _v2("redis GET -c 50, reach >= 1.0x ssh -L", "redis_get_c50", "rps", "reach/tls", "ssh", 1.0),
    _v2("keep-alive req/s, public >= 0.7x socat", "http_keepalive", "rps", "public/tls",
        "socat", 0.7),
    _v2("keep-alive req/s, edge >= 0.5x socat", "http_keepalive", "rps", "edge/tls",
        "socat", 0.5),
    _v2("keep-alive req/s, share >= 0.5x socat", "http_keepalive", "rps", "share/tls",
        "socat", 0.5),
    _v2("keep-alive req/s, reach >= 0.8x ssh -L", "http_keepalive", "rps", "reach/tls",
        "ssh", 0.8),
    _v2("new conn/s, public >= 1.0x socat", "new_connections", "rps", "public/tls", "socat", 1.0),
    _v2("new conn/s, edge >= 1.0x socat", "new_connections", "rps", "edge/tls", "socat", 1.0),
    _v2("new conn/s, share >= 1.0x socat", "new_connections", "rps", "share/tls", "socat", 1.0),
    _v2("hub memory per idle conn, public <= 6 KiB", "idle_memory", "hub_kib_per_conn",
        "public/tls", None, 6.0, at_least=False),
    _v2("agent memory per idle conn, public <= 6 KiB", "idle_memory", "agent_kib_per_conn",
        "public/tls", None, 6.0, at_least=False),
    _v2("TCP bulk, public >= 1.0x socat", "tcp_bulk", "gbit_s", "public/tls", "socat", 1.0),
    _v2("TCP bulk, reach >= 1.0x ssh -L", "tcp_bulk", "gbit_s", "reach/tls", "ssh", 1.0),
    _v2("TCP bulk -P 8, public >= 0.8x its 1 stream", "tcp_bulk_p8", "gbit_s", "public/tls",
        "public/tls", 0.8, baseline_scenario="tcp_bulk"),
    _v2("TCP bulk -P 8, reach >= 0.8x its 1 stream", "tcp_bulk_p8", "gbit_s", "reach/tls",
        "reach/tls", 0.8, baseline_scenario="tcp_bulk"),
    _v2("echo p99 beside a bulk stream, same session, mux/tls <= 5 ms", "fairness", "p99_ms",
        "mux/tls", None, 5.0, at_least=False),
    _v2("echo p99 beside a bulk stream, public <= 5 ms", "fairness", "p99_ms", "public/tls",
        None, 5.0, at_least=False),
    _v2("agent connections to the hub at 1,000 streams, public = 2", "session_count",
        "agent_connections_with_streams", "public/tls", None, 2.0, exact=True,
        given=("streams", 1000)),
    # Issue 20, agent TLS on: reach as a user gets it (direct when it can) against ssh -L, and
    # the relayed path end to end encrypted (`portway reach --relay`) against the same relayed
    # in the clear (tunnels exposed with --no-e2e).
    _e2e("redis GET -c 1, reach >= 1.0x ssh -L", "redis_get_c1", "rps", "reach/tls", "ssh", 1.0),
    _e2e("redis GET -c 50, reach >= 1.5x ssh -L", "redis_get_c50", "rps", "reach/tls", "ssh",
         1.5),
    _e2e("TCP bulk, reach >= 1.5x ssh -L", "tcp_bulk", "gbit_s", "reach/tls", "ssh", 1.5),
    *(_e2e(f"{label}, end to end relayed >= 0.8x relayed in the clear", scenario, metric,
           "reach-relayed/tls", "reach-clear/tls", 0.8)
      for label, scenario, metric in (("TCP bulk", "tcp_bulk", "gbit_s"),
                                      ("redis GET -c 1", "redis_get_c1", "rps"),
                                      ("redis GET -c 50", "redis_get_c50", "rps"))),
]  # fmt: skip


def metric(results: Results, scenario: str, path: str, name: str) -> float | None:
    """One figure of a run, or None when it was not measured (or failed)."""
    value = results.get(scenario, {}).get(path, {}).get(name)
    return float(value) if isinstance(value, int | float) else None


def evaluate(results: Results) -> list[dict[str, Any]]:
    """Each target with the measured value or ratio and whether it is met (None: not measured)."""
    out = []
    for target in TARGETS:
        value = metric(results, target.scenario, target.path, target.metric)
        if target.given is not None:
            reached = metric(results, target.scenario, target.path, target.given[0])
            if reached is None or reached < target.given[1]:
                value = None
        measured: float | None = value
        if target.baseline is not None and value is not None:
            scenario = target.baseline_scenario or target.scenario
            base = metric(results, scenario, target.baseline, target.metric)
            measured = value / base if base else None
        met = None
        if measured is not None and target.exact:
            met = measured == target.limit
        elif measured is not None:
            met = measured >= target.limit if target.at_least else measured <= target.limit
        out.append({
            "target": target.what, "group": target.group, "measured": measured,
            "limit": target.limit, "ratio": target.baseline is not None, "met": met,
        })  # fmt: skip
    return out


def targets_table(evaluated: list[dict[str, Any]]) -> str:
    """Markdown: one table per group of targets (runs from before groups count as v1)."""
    sections = []
    for group, title in GROUPS.items():
        items = [item for item in evaluated if item.get("group", "v1") == group]
        if not items:
            continue
        lines = [f"Targets of {title}:", "", "| target | measured | met |", "|---|---:|---|"]
        for item in items:
            measured = item["measured"]
            if measured is None:
                shown, met = "not measured", "-"
            else:
                shown = f"{measured:.2f}x" if item["ratio"] else f"{measured:.2f}"
                met = "yes" if item["met"] else "**no**"
            lines.append(f"| {item['target']} | {shown} | {met} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
