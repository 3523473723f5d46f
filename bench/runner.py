"""What runs where, and `Runner`, which runs it: the baselines' and Portway's paths, the
scenarios that run on some paths only, and every cell recorded (a failure as its error, and
the run goes on)."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

from bench import paths, peers, targets
from bench.paths import Endpoints
from bench.portway_stack import REACH_PATHS, PortwayStack
from bench.procs import wait_quiet
from bench.scenarios import CURVES, IDLE_CURVE, SCENARIOS
from bench.scenarios.base import Metrics, NotApplicable, Settings
from bench.scenarios.idle import idle_memory
from bench.scenarios.restart import hub_restart
from bench.servers import Origins
from bench.tools import wrk

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
# Portway's paths, each run as /tls and /plain; the reach ones are `portway_stack.REACH_PATHS`.
PORTWAY_PATHS = ("public", *REACH_PATHS, "edge", "share")
MEMORY_PATHS = ("public", "reach")
TLS_MODES = {"tls": True, "plain": False}
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
        log(f"{scenario:17} {path:17} {shown}")

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
        log(f"{name:17} {path:17} " + ", ".join(
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
            "public": stack.public, "edge": stack.edge, "share": stack.share,
            **{path: partial(stack.reach, path) for path in REACH_PATHS},
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
