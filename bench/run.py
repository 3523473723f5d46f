"""`python -m bench`: start the origins, run every scenario on every path, print and save.

Order: baselines (direct, socat, socat -b 262144, ssh -L and -R, stunnel, nginx, and the two
floors, the bare relay pair and the v2 multiplexer pair, plain and with TLS), then one Portway
stack per agent-TLS mode (memory first, on fresh processes;
then the throughput scenarios on the public, reach, edge and share paths; the hub restart
last). A failure in one cell is recorded and the run goes on, so one broken path never hides
the others.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, targets
from bench.procs import raise_nofile
from bench.runner import ALL_SCENARIOS, BASELINE_PATHS, PORTWAY_PATHS, TLS_MODES, Runner, log
from bench.scenarios import CURVES_META
from bench.scenarios.base import Settings
from bench.servers import origins

RESULTS_DIR = Path(__file__).parent / "results"
PROGRAMS = ("iperf3", "wrk", "socat", "redis-server", "redis-benchmark", "pgbench")
# A path prefix: what only it needs.
PATH_PROGRAMS = {"ssh": ("ssh", "sshd", "ssh-keygen"), "stunnel": ("stunnel4",),
                 "nginx": ("nginx",)}  # fmt: skip

QUICK = Settings(
    bulk_seconds=4, http_seconds=3, udp_seconds=3, idle_connections=3000, idle_seconds=30,
    echo_idle_seconds=2,
)  # fmt: skip
SMOKE = Settings(bulk_seconds=1, http_seconds=1, udp_seconds=1, udp_rate_mbit=50,
                 http_connections=16, idle_connections=200, idle_seconds=15,
                 redis_requests=2000, pgbench_seconds=1, curve_connections=(1, 100),
                 idle_checkpoints=(100,), echo_idle_seconds=0.5,
                 session_streams=200)  # fmt: skip
SMOKE_PATHS = ["direct", "ssh-R", "stunnel", "nginx", "relay/tls", "mux/tls", "public/tls"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    all_paths = [*BASELINE_PATHS, *(f"{p}/{t}" for p in PORTWAY_PATHS for t in TLS_MODES)]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter runs (about 4 min)")
    size.add_argument(
        "--smoke", action="store_true",
        help="about 1 s per scenario on direct, the peers, the floors and public/tls "
        "(for make test)",
    )  # fmt: skip
    parser.add_argument("--paths", help=f"comma-separated subset of: {','.join(all_paths)}")
    parser.add_argument("--only", "--scenarios", dest="scenarios", help="comma-separated "
                        f"subset of: {','.join(ALL_SCENARIOS)}")  # fmt: skip
    parser.add_argument("--seconds", type=float, help="override every scenario's duration")
    parser.add_argument("--udp-rate", type=float, help="UDP offered rate in Mbit/s")
    parser.add_argument("--idle", type=int, help="idle connections for the memory scenario")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.all_paths = all_paths
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    settings = SMOKE if args.smoke else QUICK if args.quick else Settings()
    if args.seconds:
        settings = replace(settings, bulk_seconds=args.seconds, http_seconds=args.seconds,
                           udp_seconds=args.seconds)  # fmt: skip
    if args.udp_rate:
        settings = replace(settings, udp_rate_mbit=args.udp_rate)
    if args.idle:
        settings = replace(settings, idle_connections=args.idle)
    return settings


def missing_programs(selected: list[str]) -> list[str]:
    """Programs the selected paths need that are not installed (socat also carries iperf3's
    UDP control connection on Portway's paths; ssh only for the ssh paths)."""
    needed = [*PROGRAMS]
    for prefix, programs in PATH_PROGRAMS.items():
        if any(path.startswith(prefix) for path in selected):
            needed += programs
    return [name for name in needed if not shutil.which(name)
            and not Path(f"/usr/sbin/{name}").exists()]  # fmt: skip


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds every `finally`: children stopped, temp dir gone


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    settings = settings_from(args)
    selected = args.paths.split(",") if args.paths else (
        SMOKE_PATHS if args.smoke else list(args.all_paths))  # fmt: skip
    unknown = set(selected) - set(args.all_paths)
    if unknown:
        sys.exit(f"unknown paths: {', '.join(sorted(unknown))}")
    scenarios = args.scenarios.split(",") if args.scenarios else ALL_SCENARIOS
    if unknown := set(scenarios) - set(ALL_SCENARIOS):
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if missing := missing_programs(selected):
        sys.exit(f"missing programs: {' '.join(missing)} (make bench installs them with apt-get)")
    nofile = raise_nofile()
    # The hub and each agent hold two sockets per proxied connection (plus their listeners,
    # store and pool), under the same limit.
    if nofile < 2 * settings.idle_connections + 1000:
        settings = replace(settings, idle_connections=max(100, (nofile - 1000) // 2))
        log(f"RLIMIT_NOFILE is {nofile} and cannot be raised (no CAP_SYS_RESOURCE?): "
            f"{settings.idle_connections} idle connections")  # fmt: skip
    if nofile < 2 * settings.session_streams + 1000:
        settings = replace(settings, session_streams=max(100, (nofile - 1000) // 2))
    load_before = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="portway-bench-"))
    started = time.monotonic()
    runner = Runner(settings, scenarios, selected)
    try:
        log(f"work directory {work}; settings {asdict(settings)}")
        databases = any(s.startswith(("redis", "pgbench")) for s in scenarios)
        with origins(work, databases=databases, echo="fairness" in scenarios) as origin:
            runner.baselines(origin, work)
            runner.portway(origin, work)
    finally:
        if args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    evaluated = targets.evaluate(runner.results)
    payload: dict[str, Any] = {
        "timestamp": stamp,
        "machine": report.machine_info(),
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
        "settings": asdict(settings),
        "paths": selected,
        "duration_s": round(time.monotonic() - started, 1),
        # Other work on the machine skews every figure: 1-minute load before and after.
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "results": runner.results,
        "curves": runner.curves,
        "curves_meta": {name: CURVES_META[name] for name in runner.curves},
        "targets": evaluated,
    }
    report.publish(payload, args.out, [p for p in args.all_paths if p in selected])
    failed = [p for s in runner.results.values() for p, m in s.items() if "error" in m]
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
