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
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import paths, peers, report, targets
from bench.paths import Endpoints, Origins, PortwayStack
from bench.procs import Proc, port_open, raise_nofile, wait_for, wait_quiet
from bench.scenarios import (
    CURVES,
    CURVES_META,
    IDLE_CURVE,
    SCENARIOS,
    Metrics,
    NotApplicable,
    Settings,
    hub_restart,
    idle_memory,
)
from bench.tools import wrk
from portway.testing.ports import free_port
from portway.testing.postgres import find_pg_bin, throwaway_cluster
from portway.testing.redis import throwaway_redis

RESULTS_DIR = Path(__file__).parent / "results"
BaselineFactory = Callable[[Origins, Path], AbstractContextManager[Endpoints]]
BASELINE_PATHS: dict[str, BaselineFactory] = {
    "direct": paths.direct,
    "socat": paths.socat,
    "socat-256k": partial(paths.socat, buffer=262144),
    "ssh": peers.ssh,
    "ssh-R": partial(peers.ssh, reverse=True),
    "stunnel": peers.stunnel,
    "nginx": peers.nginx,
    "relay/plain": partial(paths.relay, tls=False),
    "relay/tls": partial(paths.relay, tls=True),
    "mux/plain": partial(paths.mux, tls=False),
    "mux/tls": partial(paths.mux, tls=True),
}
# The fairness scenario runs on the multiplexer pairs started with one session, so that its
# echo and its bulk are streams of the same session (the pairs' other scenarios use two).
ONE_SESSION_SCENARIOS = ("fairness",)
ONE_SESSION_PATHS: dict[str, BaselineFactory] = {
    "mux/plain": partial(paths.mux, tls=False, sessions=1),
    "mux/tls": partial(paths.mux, tls=True, sessions=1),
}
PORTWAY_PATHS = ("public", "reach", "edge", "share")
MEMORY_PATHS = ("public", "reach")
TLS_MODES = {"tls": True, "plain": False}
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
# The keep-alive curve runs on these: the public and edge paths and the peers they compare with.
CURVE_PATHS = frozenset({"direct", "socat", "nginx", "mux/tls", "public/tls", "public/plain",
                         "edge/tls", "edge/plain"})  # fmt: skip
# Scenarios that run on some paths only (every other scenario runs wherever it applies).
SCENARIO_PATHS: dict[str, frozenset[str]] = {
    "fairness": frozenset({"mux/plain", "mux/tls", "public/tls"}),
    "session_count": frozenset({"public/tls"}),
}


ALL_SCENARIOS = [*SCENARIOS, *CURVES, "hub_restart"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


@contextlib.contextmanager
def origins(work: Path, databases: bool = True, echo: bool = False) -> Iterator[Origins]:
    """The iperf3 server (TCP and UDP on one port), the HTTP origin, with `echo` the TCP echo
    origin and, with `databases`, a throwaway redis-server and a PostgreSQL cluster
    initialised for pgbench."""
    iperf_port, http_port = paths.free_tcp_udp_port(), free_port()
    echo_port = free_port() if echo else 0
    procs = [
        Proc(["iperf3", "-s", "-p", str(iperf_port), "--bind", "127.0.0.1"], work / "iperf3.log"),
        Proc([sys.executable, "-m", "bench.origin", str(http_port)], work / "origin.log"),
    ]
    ports = [iperf_port, http_port]
    if echo:
        procs.append(Proc([sys.executable, "-m", "bench.origin", "--echo", str(echo_port)],
                          work / "echo.log"))  # fmt: skip
        ports.append(echo_port)
    try:
        for proc, port in zip(procs, ports, strict=True):
            wait_for(partial(_listening, proc, port), timeout=15, what=proc.args[0])
        with contextlib.ExitStack() as stack:
            redis_port = postgres_port = 0
            if databases:
                redis_port = stack.enter_context(throwaway_redis(_program("redis-server")))
                postgres_port = stack.enter_context(pgbench_cluster())
            yield Origins(iperf_port, http_port, redis_port, postgres_port, echo_port)
    finally:
        for proc in procs:
            proc.stop()


@contextlib.contextmanager
def pgbench_cluster() -> Iterator[int]:
    """A throwaway PostgreSQL cluster with pgbench's tables (scale 1); yields its port."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
    with throwaway_cluster(bin_dir) as cluster:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", "1", "-h", cluster.host, "-p", str(cluster.port),
             "-U", cluster.user, "postgres"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield cluster.port


def _program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (make bench installs it with apt-get)")
    return found


def _listening(proc: Proc, port: int) -> bool:
    if not proc.alive():
        raise RuntimeError(f"{proc.args[0]} exited: {proc.output()[-2000:]}")
    return port_open(port)


class Runner:
    def __init__(self, settings: Settings, scenarios: list[str], selected: list[str]) -> None:
        self.settings = settings
        self.scenarios = scenarios
        self.selected = selected
        self.results: targets.Results = {}
        self.curves: dict[str, dict[str, list[Metrics]]] = {}

    def record(self, scenario: str, path: str, run: Callable[[], dict[str, float]]) -> None:
        try:
            metrics = run()
        except NotApplicable:
            return
        except Exception as exc:  # one broken cell must not stop the run
            log(f"{scenario} on {path} failed: {exc}")
            traceback.print_exc(file=sys.stderr)
            self.results.setdefault(scenario, {})[path] = {"error": str(exc)[:500]}
            return
        self.results.setdefault(scenario, {})[path] = metrics
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        log(f"{scenario:17} {path:12} {shown}")

    def record_curve(self, name: str, path: str, run: Callable[[], list[Metrics]]) -> None:
        try:
            points = run()
        except NotApplicable:
            return
        except Exception as exc:  # as in `record`
            log(f"{name} on {path} failed: {exc}")
            traceback.print_exc(file=sys.stderr)
            self.results.setdefault(name, {})[path] = {"error": str(exc)[:500]}
            return
        self.curves.setdefault(name, {})[path] = points
        log(f"{name:17} {path:12} " + ", ".join(
            f"{p['x']:g}: {p.get('rps', 0):.4g} req/s" for p in points))  # fmt: skip

    def idle_memory(self, path: str, endpoints: Endpoints) -> Metrics:
        """The idle-memory scenario, its checkpoints recorded as the RSS-by-idle curve."""
        points = self.curves.setdefault(IDLE_CURVE, {}).setdefault(path, [])
        points.clear()

        def checkpoint(connections: int, rss_mib: dict[str, float]) -> None:
            points.append({"x": float(connections),
                           **{f"{role}_rss_mib": v for role, v in rss_mib.items()}})  # fmt: skip

        return idle_memory(endpoints, self.settings, on_checkpoint=checkpoint)

    def runs(self, name: str, path: str, skip: tuple[str, ...] = ()) -> bool:
        """Whether scenario `name` was asked for and runs on `path` (`SCENARIO_PATHS`)."""
        return (name in self.scenarios and name in SCENARIOS and name not in skip
                and path in SCENARIO_PATHS.get(name, (path,)))  # fmt: skip

    def run_path(self, path: str, endpoints: Endpoints, skip: tuple[str, ...]) -> None:
        for name in self.scenarios:
            if not self.runs(name, path, skip):
                continue
            _label, scenario = SCENARIOS[name]
            time.sleep(0.5)  # let sockets from the previous run drain
            if name == "idle_memory":
                self.record(name, path, partial(self.idle_memory, path, endpoints))
            else:
                self.record(name, path, partial(scenario, endpoints, self.settings))
        for name, (*_meta, curve) in CURVES.items():
            if name in self.scenarios and name not in skip and path in CURVE_PATHS:
                self.record_curve(name, path, partial(curve, endpoints, self.settings))

    def baselines(self, origin: Origins, work: Path) -> None:
        for name, factory in BASELINE_PATHS.items():
            if name not in self.selected:
                continue
            # Of the baselines only the relay pairs are measured for memory: the floors of an
            # idle connection in Python, v1 and v2 (socat forks per connection).
            skip: tuple[str, ...] = () if name.startswith(("relay/", "mux/")) else ("idle_memory",)
            one_session = ONE_SESSION_PATHS.get(name)
            if one_session is not None:
                skip += ONE_SESSION_SCENARIOS
            if any(self.runs(s, name, skip) for s in SCENARIOS) or (
                name in CURVE_PATHS and any(c in self.scenarios for c in CURVES)
            ):
                log(f"path {name}")
                self._baseline(name, partial(factory, origin, work), skip)
            if one_session is not None and any(self.runs(s, name) for s in ONE_SESSION_SCENARIOS):
                log(f"path {name}, one session")
                others = tuple(s for s in ALL_SCENARIOS if s not in ONE_SESSION_SCENARIOS)
                self._baseline(name, partial(one_session, origin, work), others, "/1-session")

    def _baseline(
        self, name: str, start: Callable[[], AbstractContextManager[Endpoints]],
        skip: tuple[str, ...], setup_suffix: str = "",
    ) -> None:  # fmt: skip
        try:
            with start() as endpoints:
                self.run_path(name, endpoints, skip=skip)
        except Exception as exc:
            log(f"path {name}{setup_suffix} could not start: {exc}")
            self.results.setdefault("setup", {})[name + setup_suffix] = {"error": str(exc)[:500]}

    def portway(self, origin: Origins, work: Path) -> None:
        for tls_name, tls in TLS_MODES.items():
            wanted = [p for p in PORTWAY_PATHS if f"{p}/{tls_name}" in self.selected]
            if not wanted:
                continue
            log(f"Portway stack, agent TLS {'on' if tls else 'off'}")
            stack_dir = work / f"portway-{tls_name}"
            stack_dir.mkdir()
            started = time.monotonic()
            try:
                with PortwayStack(origin, stack_dir, tls=tls, paths=frozenset(wanted)) as stack:
                    log(f"stack ready in {time.monotonic() - started:.1f} s")
                    self._portway_stack(stack, tls_name, wanted)
            except Exception as exc:
                log(f"Portway stack ({tls_name}) failed: {exc}")
                traceback.print_exc(file=sys.stderr)
                self.results.setdefault("setup", {})[f"portway/{tls_name}"] = {
                    "error": str(exc)[:500]
                }

    def _portway_stack(self, stack: PortwayStack, tls_name: str, wanted: list[str]) -> None:
        getters: dict[str, Callable[[], Endpoints]] = {
            "public": stack.public, "reach": stack.reach, "edge": stack.edge,
            "share": stack.share,
        }  # fmt: skip
        if "idle_memory" in self.scenarios:
            for path in (p for p in MEMORY_PATHS if p in wanted):
                endpoints = getters[path]()
                assert endpoints.http is not None
                with contextlib.suppress(Exception):  # warm up the code paths
                    wrk(endpoints.http, 1, 8)
                measure = partial(self.idle_memory, f"{path}/{tls_name}", endpoints)
                self.record("idle_memory", f"{path}/{tls_name}", measure)
                # The hub and agents finish their side of thousands of closed connections
                # (data channels closing or going back to the pool) a second or two after the
                # origin's: the next scenario must not pay for it.
                with contextlib.suppress(TimeoutError):
                    wait_quiet(stack.pids, timeout=30)
        for path in wanted:
            log(f"path {path}/{tls_name}")
            self.run_path(f"{path}/{tls_name}", getters[path](), skip=("idle_memory",))
        if "hub_restart" in self.scenarios:
            self.record("hub_restart", tls_name, partial(hub_restart, stack))


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
    written = report.write_json(args.out, stamp, payload)
    machine = payload["machine"]
    order = [p for p in args.all_paths if p in selected]
    print(f"\nPortway benchmark, {payload['mode']} run, {stamp}: {machine['cpu_model']}, "
          f"{machine['cores']} cores, Python {machine['versions']['python']}\n")  # fmt: skip
    print(report.table(runner.results, order))
    print()
    print(targets.targets_table(evaluated))
    print(f"\nwritten to {written} in {payload['duration_s']:.0f} s")
    from bench.plot import write_charts  # matplotlib: only once the figures are in

    for chart in write_charts(payload, args.out, stamp):
        print(f"chart {chart}")
    failed = [p for s in runner.results.values() for p, m in s.items() if "error" in m]
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
