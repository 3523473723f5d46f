"""`bench.plot` writes readable PNGs and `bench.compare` gives the right verdicts.

Both read result JSON as `python -m bench` writes it: a small synthetic payload (with curves,
errored and missing cells) and the real full run in bench/results/. No benchmark is run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import compare, plot

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "bench" / "results" / "20261129T113133Z.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic() -> dict[str, Any]:
    """A run with two ROWS figures, one new scenario, an error, junk, and both curves."""
    return {
        "timestamp": "20270101T000000Z",
        "paths": ["direct", "socat", "public/plain", "public/tls"],
        "results": {
            "tcp_bulk": {
                "direct": {"gbit_s": 20.0},
                "socat": {"gbit_s": 4.0},
                "public/plain": {"gbit_s": 8.0, "retransmits": 10},
                "public/tls": {"error": "iperf3 failed"},
            },
            "http_keepalive": {
                "socat": {"rps": 10000.0, "p99_ms": 5.0},
                "public/plain": {"rps": 6000.0, "p99_ms": 10.0},
                "public/tls": {"rps": "n/a", "p99_ms": None},
            },
            "redis_get_c50": {"direct": {"rps": 90000.0}, "public/plain": {"rps": 45000.0}},
            "unknown_scenario": {"public/plain": {"whatever": 1.0}},
        },
        "curves": {
            "keepalive_by_connections": {
                "socat": [
                    {"x": c, "rps": 9000.0 + c, "p99_ms": 1.0 + c / 100} for c in (1, 10, 100, 1000)
                ],
                "public/plain": [
                    {"x": c, "rps": 5000.0 + c, "p99_ms": 2.0 + c / 50} for c in (1, 10, 100, 1000)
                ],
                "public/tls": {"error": "wrk failed"},
            },
            "hub_rss_by_idle": {
                "public/plain": [
                    {"x": n, "hub_rss_mib": 40 + n / 250, "agent_rss_mib": 30 + n / 250}
                    for n in (1000, 5000, 10000, 20000)
                ]
                + [{"x": 40000}, "junk"],
            },
        },
        "curves_meta": {
            "keepalive_by_connections": {
                "x": "concurrent connections",
                "metrics": ["rps", "p99_ms"],
                "units": {"rps": "req/s", "p99_ms": "ms"},
            },
            "hub_rss_by_idle": {
                "x": "idle connections",
                "metrics": ["hub_rss_mib", "agent_rss_mib"],
                "units": {"hub_rss_mib": "MiB"},
            },
        },
    }


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, (path, len(data))


def test_charts_of_a_synthetic_run(tmp_path: Path) -> None:
    written = plot.write_charts(synthetic(), tmp_path / "charts", "stamp")
    names = sorted(path.name for path in written)
    assert names == ["stamp-hub_rss_by_idle.png", "stamp-keepalive_by_connections.png",
                     "stamp-ratios.png"]  # fmt: skip
    for path in written:
        assert_png(path)


def test_charts_of_the_real_run_next_to_the_json(tmp_path: Path, capsys: Any) -> None:
    result = tmp_path / REAL.name
    result.write_text(REAL.read_text())
    assert plot.main([str(result)]) == 0
    chart = tmp_path / "20261129T113133Z-ratios.png"
    assert capsys.readouterr().out.split() == [str(chart)]  # no curves: the ratios only
    assert_png(chart)


def test_charts_survive_empty_and_malformed_payloads(tmp_path: Path) -> None:
    empty = plot.write_charts({}, tmp_path, "empty")
    assert [path.name for path in empty] == ["empty-ratios.png"]
    assert_png(empty[0])
    broken = {"results": {"tcp_bulk": "oops", "udp": {"socat": None}},
              "curves": {"a/b c": {"socat": "oops"}, "bad": []}, "curves_meta": "oops"}  # fmt: skip
    assert [path.name for path in plot.write_charts(broken, tmp_path, "b")] == ["b-ratios.png"]


def changed() -> tuple[dict[str, Any], dict[str, Any]]:
    """Old and new runs: public/plain bulk doubled, keep-alive p99 tripled, socat unchanged."""
    old = synthetic()
    new = copy.deepcopy(old)
    new["timestamp"] = "20270102T000000Z"
    new["results"]["tcp_bulk"]["public/plain"]["gbit_s"] = 16.0
    new["results"]["tcp_bulk"]["public/plain"]["retransmits"] = 10.5
    new["results"]["http_keepalive"]["public/plain"]["p99_ms"] = 30.0
    new["results"]["http_keepalive"]["public/tls"] = {"error": "wrk failed"}
    del new["results"]["redis_get_c50"]["public/plain"]
    new["curves"]["keepalive_by_connections"]["public/plain"][3]["rps"] = 500.0
    return old, new


def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [row for row in rows if all(row[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_compare_verdicts() -> None:
    old, new = changed()
    result = compare.compare(old, new)
    figures = result["figures"]
    bulk = find(figures, scenario="tcp_bulk", path="public/plain", metric="gbit_s")
    assert (bulk["ratio"], bulk["verdict"]) == (2.0, "better")
    p99 = find(figures, scenario="http_keepalive", path="public/plain", metric="p99_ms")
    assert (p99["ratio"], p99["verdict"]) == (3.0, "worse")
    assert find(figures, path="public/plain", metric="retransmits")["verdict"] == "same"
    assert find(figures, scenario="tcp_bulk", path="socat")["verdict"] == "same"
    assert not [row for row in figures if row["path"] == "public/tls"]
    assert not [row for row in figures if row["scenario"] == "redis_get_c50"
                and row["path"] == "public/plain"]  # fmt: skip
    point = find(result["curves"], path="public/plain", x=1000.0, metric="rps")
    assert point["verdict"] == "worse"
    assert find(result["curves"], path="public/plain", x=1.0, metric="rps")["verdict"] == "same"
    ratio = find(result["socat_ratios"], scenario="tcp_bulk", path="public/plain")
    assert (ratio["old"], ratio["new"], ratio["verdict"]) == (2.0, 4.0, "better")
    assert ratio["target"] == ">= 1x"
    assert find(result["errors"], path="public/tls", scenario="tcp_bulk")["old"] == "iperf3 failed"


def test_compare_noise_band() -> None:
    old, new = changed()
    loose = compare.compare(old, new, noise=2.5)
    assert {row["verdict"] for row in loose["figures"]} == {"same"}


def test_compare_markdown_and_json(tmp_path: Path, capsys: Any) -> None:
    old, new = changed()
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    files = [str(tmp_path / "old.json"), str(tmp_path / "new.json")]
    assert compare.main(files) == 0
    text = capsys.readouterr().out
    assert "| tcp_bulk | public/plain | gbit_s | 8 | 16 | 2x | **better** |" in text
    assert "| http_keepalive | public/plain | p99_ms | 10 | 30 | 3x | **worse** |" in text
    assert "| keepalive_by_connections | public/plain | 1,000 | rps |" in text
    assert compare.main([*files, "--json", "--noise", "0.05"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["noise"] == 0.05
    assert find(data["figures"], path="public/plain", metric="gbit_s")["verdict"] == "better"
    assert find(data["figures"], path="public/plain", metric="p99_ms")["verdict"] == "worse"


def test_compare_the_real_run_with_itself_and_with_nothing(capsys: Any) -> None:
    real = json.loads(REAL.read_text())
    same = compare.compare(real, real)
    assert same["figures"] and {row["verdict"] for row in same["figures"]} == {"same"}
    assert same["socat_ratios"]
    assert compare.main([str(REAL), str(REAL)]) == 0
    assert "| new_connections | rps | public/plain |" in capsys.readouterr().out
    assert compare.compare({}, real) == {"old": None, "new": real["timestamp"], "noise": 0.1,
                                         "figures": [], "curves": [], "socat_ratios": [],
                                         "errors": []}  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "metric", "higher"),
    [("tcp_bulk", "gbit_s", True), ("http_keepalive", "p99_ms", False),
     ("pgbench_c16", "tps", True), ("idle_memory", "hub_kib_per_conn", False),
     ("hub_restart", "serving_s", False), ("hub_rss_by_idle", "hub_rss_mib", False),
     ("udp_new", "delivered_mbit_s", True), ("x", "loss", False), ("x", "requests", True)],
)  # fmt: skip
def test_higher_is_better(scenario: str, metric: str, higher: bool) -> None:
    assert compare.higher_is_better(scenario, metric) is higher
