"""`python -m bench.profile`: where the hub and the agents spend their time.

Starts the origins and a Portway stack (public, reach, edge and share paths), then for each load
(iperf3 TCP bulk, wrk with ``Connection: close``, wrk keep-alive through the edge,
redis-benchmark and pgbench through the public and reach paths) records the hub, every
`portway expose` process and the reaching agent with py-spy while the load runs (the hub
spreads connections over all of the machine's sessions), and prints the functions with the most
samples (own time, and time including callees; the agents' samples summed). Raw collapsed
stacks (for flamegraph.pl or speedscope) are kept next to the JSON results. Needs py-spy
(``.venv/bin/pip install py-spy``); as root it can attach.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench.portway_stack import PortwayStack
from bench.procs import Proc, raise_nofile
from bench.run import RESULTS_DIR
from bench.scenarios.base import Settings
from bench.scenarios.idle import idle_memory
from bench.scenarios.traffic import PGBENCH_USER
from bench.servers import origins
from bench.tools import iperf3_tcp, pgbench, redis_benchmark, wrk

# Frames every sample passes through (CLI start-up, the event loop's entry): not informative.
BOILERPLATE = ("click/", "<frozen runpy>", "portway/cli/", "portway/__main__.py", "Runner.run",
               "threading.py")  # fmt: skip


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def summarize(collapsed: list[Path], top: int) -> str:
    """Top functions by own samples and by inclusive samples, from py-spy's raw output (one
    file per process, summed)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    lines = [line for path in collapsed for line in path.read_text().splitlines()]
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            if not any(part in frame for part in BOILERPLATE):
                inclusive[frame] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; own time:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  including callees:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (/long/path/portway/net/splice.py:123)`` -> ``func (portway/net/splice.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/portway/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path[path.index(marker) + 1 :]
            break
    return f"{name} ({path})" if path else name


def record(pids: dict[str, tuple[int, ...]], seconds: float, out: Path, tag: str) -> list[Proc]:
    """One py-spy per process, writing ``<tag>-<role>-<pid>.txt``."""
    spies = []
    for role, group in pids.items():
        for pid in group:
            name = f"{tag}-{role}-{pid}"
            spies.append(Proc(
                [py_spy(), "record", "-p", str(pid), "-d", f"{seconds:.0f}", "-r", "200",
                 "--format", "raw", "-o", str(out / f"{name}.txt"), "--nonblocking"],
                out / f"{name}.log",
            ))  # fmt: skip
    time.sleep(1.0)  # py-spy attaches
    return spies


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--tls", choices=("on", "off"), default="on")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--only", help="comma-separated loads: tcp_bulk,new_connections,"
                        "edge_keepalive,share_keepalive,idle_open,redis_c1,reach_redis_c1,"
                        "redis_c50,reach_redis_c50,pgbench_c16")  # fmt: skip
    parser.add_argument("--idle", type=int, default=9000, help="connections for idle_open")
    args = parser.parse_args()
    raise_nofile()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"profile-{stamp}-tls-{args.tls}"
    out.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="portway-profile-"))
    report: list[str] = []
    try:
        with (
            origins(work) as origin,
            PortwayStack(
                origin, work, tls=args.tls == "on",
                paths=frozenset({"public", "reach", "edge", "share"}),
            ) as stack,
        ):  # fmt: skip
            public, reach = stack.public(), stack.reach()
            edge, share = stack.edge(), stack.share()
            assert public.iperf_tcp and public.http and edge.http and share.http
            assert public.redis and public.postgres and reach.redis
            pids = {"hub": (stack.hub_pid,), "agents": stack.exposing_pids,
                    "reaching": (stack.agents["reach-redis"].proc.pid,)}  # fmt: skip
            requests = 20_000
            seconds = args.seconds
            idle = Settings(idle_connections=args.idle, idle_seconds=seconds)
            loads: dict[str, Callable[[], dict[str, float]]] = {
                "tcp_bulk": partial(iperf3_tcp, public.iperf_tcp, seconds),
                "new_connections": partial(wrk, public.http, seconds, 50, close=True),
                "edge_keepalive": partial(wrk, edge.http, seconds, 50),
                "share_keepalive": partial(wrk, share.http, seconds, 50),
                # Opening thousands of idle connections (the memory scenario's load).
                "idle_open": partial(idle_memory, public, idle),
                # Real database clients: round-trip bound (-c 1) and many clients (-c 50).
                "redis_c1": partial(redis_benchmark, public.redis, "get", 1, requests),
                "reach_redis_c1": partial(redis_benchmark, reach.redis, "get", 1, requests),
                "redis_c50": partial(redis_benchmark, public.redis, "get", 50, 5 * requests),
                "reach_redis_c50": partial(redis_benchmark, reach.redis, "get", 50, 5 * requests),
                "pgbench_c16": partial(pgbench, public.postgres, 16, seconds, PGBENCH_USER),
            }
            for tag, load in loads.items():
                if args.only and tag not in args.only.split(","):
                    continue
                spies = record(pids, seconds + 1, out, tag)
                result = load()
                for spy in spies:
                    spy.popen.wait(timeout=60)
                report.append(f"\n== {tag}, agent TLS {args.tls}: {result}")
                for role, group in pids.items():
                    report.append(
                        f"-- {role} ({len(group)} process{'es' if len(group) > 1 else ''})"
                    )
                    files = [out / f"{tag}-{role}-{pid}.txt" for pid in group]
                    report.append(summarize(files, args.top))
                print("\n".join(report[-1 - 2 * len(pids) :]), flush=True)
    except subprocess.TimeoutExpired:
        print("py-spy did not finish", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = out.with_suffix(".txt")
    summary.write_text("\n".join(report).lstrip() + "\n")
    print(f"\nsummary in {summary}, raw stacks (for speedscope/flamegraph.pl) in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
