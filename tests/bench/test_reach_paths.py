"""The reach paths of the benchmark (`bench.portway_stack.REACH_PATHS`): selectable with
``--paths``, only the processes a chosen path needs, the same peers as reach, and issue 20's
targets on them. Nothing is started: the plans and tables only."""

from __future__ import annotations

from pathlib import Path

from bench.portway_stack import CLEAR, PortwayStack
from bench.run import parse_args
from bench.servers import Origins

from bench import report, runner, targets

REACH = ("reach", "reach-relayed", "reach-clear")


def _stack(tmp_path: Path, *paths: str) -> PortwayStack:
    origins = Origins(iperf_port=5201, http_port=8080, redis_port=6379)
    return PortwayStack(origins, tmp_path, tls=True, paths=frozenset(paths))


def test_every_reach_path_is_selectable_in_both_modes() -> None:
    all_paths = parse_args([]).all_paths
    for path in REACH:
        assert {f"{path}/tls", f"{path}/plain"} <= set(all_paths), path
        assert report.PEERS[f"{path}/tls"] == report.PEERS["reach/tls"]
        assert report.PEERS[f"{path}/plain"] == report.PEERS["reach/plain"]
    assert set(runner.PORTWAY_PATHS) >= set(REACH)


def test_only_reach_clear_exposes_the_tunnels_again_without_e2e(tmp_path: Path) -> None:
    plain = _stack(tmp_path, "public", "reach", "reach-relayed").exposes()
    assert [name for name, *_ in plain] == ["iperf", "iperfu", "web", "redis"]
    assert all(e2e for *_, e2e in plain)
    clear = _stack(tmp_path, "reach-clear").exposes()
    again = [(name, e2e) for name, _target, _protocol, e2e in clear if name.endswith(CLEAR)]
    assert again == [(f"{name}{CLEAR}", False) for name in ("iperf", "iperfu", "web", "redis")]


def test_one_reach_process_per_tunnel_and_chosen_path(tmp_path: Path) -> None:
    assert _stack(tmp_path, "public", "edge").reaches() == []
    reaches = _stack(tmp_path, "reach-relayed", "reach-clear").reaches()
    assert {(path, options) for path, _name, options in reaches} == {
        ("reach-relayed", ("--relay",)), ("reach-clear", ("--relay",)),
    }  # fmt: skip
    assert [name for path, name, _ in reaches if path == "reach-clear"] == [
        "iperf", "iperfu", "web", "redis",
    ]  # fmt: skip
    (default,) = {options for _p, _n, options in _stack(tmp_path, "reach").reaches()}
    assert default == ()  # what a user gets: no --relay


def test_e2e_targets_compare_relayed_end_to_end_with_relayed_in_the_clear() -> None:
    e2e = [t for t in targets.TARGETS if t.group == "e2e"]
    assert "e2e" in targets.GROUPS
    against_clear = {t.scenario for t in e2e if t.baseline == "reach-clear/tls"}
    assert against_clear == {"tcp_bulk", "redis_get_c1", "redis_get_c50"}
    assert all(t.path == "reach-relayed/tls" and t.limit == 0.8 for t in e2e
               if t.baseline == "reach-clear/tls")  # fmt: skip
    assert {(t.scenario, t.limit) for t in e2e if t.baseline == "ssh"} == {
        ("redis_get_c1", 1.0), ("redis_get_c50", 1.5), ("tcp_bulk", 1.5),
    }  # fmt: skip
    results: targets.Results = {"tcp_bulk": {
        "reach-relayed/tls": {"gbit_s": 1.8}, "reach-clear/tls": {"gbit_s": 2.0},
    }}  # fmt: skip
    evaluated = [item for item in targets.evaluate(results) if item["group"] == "e2e"]
    (bulk,) = [item for item in evaluated if item["measured"] is not None]
    assert bulk["target"].startswith("TCP bulk, end to end relayed")
    assert (round(bulk["measured"], 2), bulk["met"]) == (0.9, True)
    table = targets.targets_table(targets.evaluate(results))
    assert "Targets of direct path and end-to-end reach (issue 20):" in table
