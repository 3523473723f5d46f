"""Compare two benchmark results: `python -m bench.compare OLD.json NEW.json [--noise 0.1]`.

Run by hand (or by a script, with `--json`) on two files from bench/results/. Every numeric
figure present in both runs is listed with its old and new value, new/old and a verdict
("better", "worse", "same" inside the noise band), and so is every curve point with the same x
in both. For the (scenario, metric) pairs of the README targets (`targets.TARGETS`), each
Portway path's ratio to socat is compared too, where both runs measured socat.

`bench.plot` imports `higher_is_better` and `number` from here. The exit
status is 0 whatever the verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import report, targets

# Suffixes of rates (higher is better), checked before the lower-is-better ones since
# "gbit_s" ends in "_s" too.
_RATE_SUFFIXES = ("bit_s", "_per_s", "rps", "tps")
_LOWER_SUFFIXES = ("_ms", "_pct", "loss", "kib_per_conn", "_s", "_mib", "_kib", "retransmits",
                   "errors", "non_2xx", "stalled")  # fmt: skip


def higher_is_better(scenario: str, metric: str) -> bool:
    """From `report.ROWS` when it lists the figure, else guessed from the metric's name."""
    for row_scenario, row_metric, _unit, _label, higher in report.ROWS:
        if (row_scenario, row_metric) == (scenario, metric):
            return higher
    if metric.endswith(_RATE_SUFFIXES):
        return True
    return not metric.endswith(_LOWER_SUFFIXES)


def number(value: Any) -> float | None:
    """`value` as a float when it is a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def verdict(old: float, new: float, higher: bool, noise: float) -> tuple[float | None, str]:
    """new/old (None when old is 0) and whether new is better, worse or the same."""
    if old == 0:
        if new == 0:
            return None, "same"
        return None, "better" if (new > 0) == higher else "worse"
    ratio = new / old
    if 1 - noise <= ratio <= 1 + noise:
        return ratio, "same"
    return ratio, "better" if (ratio > 1) == higher else "worse"


def _entries(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    results = payload.get("results")
    return results if isinstance(results, dict) else {}


def _cells(
    old: dict[str, Any], new: dict[str, Any]
) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(scenario, path, old entry, new entry) for every cell both runs have."""
    new_results = _entries(new)
    for scenario, old_paths in _entries(old).items():
        new_paths = new_results.get(scenario)
        if not isinstance(old_paths, dict) or not isinstance(new_paths, dict):
            continue
        for path, old_entry in old_paths.items():
            new_entry = new_paths.get(path)
            if isinstance(old_entry, dict) and isinstance(new_entry, dict):
                yield scenario, path, old_entry, new_entry


def _figures(old: dict[str, Any], new: dict[str, Any], noise: float) -> list[dict[str, Any]]:
    rows = []
    for scenario, path, old_entry, new_entry in _cells(old, new):
        for metric, old_raw in old_entry.items():
            old_value, new_value = number(old_raw), number(new_entry.get(metric))
            if old_value is None or new_value is None:
                continue
            ratio, word = verdict(old_value, new_value, higher_is_better(scenario, metric), noise)
            rows.append({"scenario": scenario, "path": path, "metric": metric,
                         "old": old_value, "new": new_value, "ratio": ratio,
                         "verdict": word})  # fmt: skip
    return rows


def _errors(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Cells that failed in either run while measured in both."""
    rows = []
    for scenario, path, old_entry, new_entry in _cells(old, new):
        if "error" in old_entry or "error" in new_entry:
            old_error, new_error = old_entry.get("error"), new_entry.get("error")
            rows.append({"scenario": scenario, "path": path,
                         "old": old_error, "new": new_error})  # fmt: skip
    return rows


def _points(series: Any) -> dict[float, dict[str, Any]]:
    """A curve's points for one path, by x; anything malformed is left out."""
    if not isinstance(series, list):
        return {}
    out = {}
    for point in series:
        x = number(point.get("x")) if isinstance(point, dict) else None
        if x is not None:
            out[x] = point
    return out


def _curves(old: dict[str, Any], new: dict[str, Any], noise: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    old_curves, new_curves = old.get("curves"), new.get("curves")
    if not isinstance(old_curves, dict) or not isinstance(new_curves, dict):
        return rows
    for curve, old_paths in old_curves.items():
        new_paths = new_curves.get(curve)
        if not isinstance(old_paths, dict) or not isinstance(new_paths, dict):
            continue
        for path, old_series in old_paths.items():
            new_points = _points(new_paths.get(path))
            for x, old_point in sorted(_points(old_series).items()):
                new_point = new_points.get(x)
                if new_point is None:
                    continue
                for metric, old_raw in old_point.items():
                    old_value, new_value = number(old_raw), number(new_point.get(metric))
                    if metric == "x" or old_value is None or new_value is None:
                        continue
                    ratio, word = verdict(
                        old_value, new_value, higher_is_better(curve, metric), noise
                    )
                    rows.append({"curve": curve, "path": path, "x": x, "metric": metric,
                                 "old": old_value, "new": new_value, "ratio": ratio,
                                 "verdict": word})  # fmt: skip
    return rows


def _to_socat(payload: dict[str, Any], scenario: str, path: str, metric: str) -> float | None:
    paths = _entries(payload).get(scenario)
    if not isinstance(paths, dict):
        return None
    socat = number((paths.get("socat") or {}).get(metric))
    value = number((paths.get(path) or {}).get(metric))
    if value is None or not socat:
        return None
    return value / socat


def _socat_ratios(old: dict[str, Any], new: dict[str, Any], noise: float) -> list[dict[str, Any]]:
    limits = {(t.scenario, t.metric, t.path): t for t in targets.TARGETS if t.baseline == "socat"}
    pairs = dict.fromkeys((t.scenario, t.metric) for t in targets.TARGETS if t.baseline)
    rows = []
    for scenario, metric in pairs:
        paths = _entries(new).get(scenario)
        for path in paths if isinstance(paths, dict) else {}:
            if path in report.BASELINES:
                continue
            old_ratio = _to_socat(old, scenario, path, metric)
            new_ratio = _to_socat(new, scenario, path, metric)
            if old_ratio is None or new_ratio is None:
                continue
            change, word = verdict(old_ratio, new_ratio, higher_is_better(scenario, metric), noise)
            target = limits.get((scenario, metric, path))
            shown = f"{'>=' if target.at_least else '<='} {target.limit:g}x" if target else ""
            rows.append({"scenario": scenario, "metric": metric, "path": path,
                         "old": old_ratio, "new": new_ratio, "change": change,
                         "verdict": word, "target": shown})  # fmt: skip
    return rows


def compare(old: dict[str, Any], new: dict[str, Any], noise: float = 0.1) -> dict[str, Any]:
    """Everything `main` prints, as one JSON-ready dict."""
    return {
        "old": old.get("timestamp"),
        "new": new.get("timestamp"),
        "noise": noise,
        "figures": _figures(old, new, noise),
        "curves": _curves(old, new, noise),
        "socat_ratios": _socat_ratios(old, new, noise),
        "errors": _errors(old, new),
    }


def _num(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "-"
    return (f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}") + suffix


def markdown(comparison: dict[str, Any]) -> str:
    """The comparison as Markdown tables, the verdicts in bold when not "same"."""

    def word(row: dict[str, Any]) -> str:
        return row["verdict"] if row["verdict"] == "same" else f"**{row['verdict']}**"

    band = f"±{comparison['noise']:.0%}"
    lines = [f"# {comparison['old']} → {comparison['new']} (same within {band})", "",
             "| scenario | path | metric | old | new | new/old | verdict |",
             "|---|---|---|---:|---:|---:|---|"]  # fmt: skip
    for row in comparison["figures"]:
        lines.append(f"| {row['scenario']} | {row['path']} | {row['metric']} "
                     f"| {_num(row['old'])} | {_num(row['new'])} | {_num(row['ratio'], 'x')} "
                     f"| {word(row)} |")  # fmt: skip
    if comparison["curves"]:
        lines += ["", "| curve | path | x | metric | old | new | new/old | verdict |",
                  "|---|---|---:|---|---:|---:|---:|---|"]  # fmt: skip
        for row in comparison["curves"]:
            lines.append(f"| {row['curve']} | {row['path']} | {_num(row['x'])} | {row['metric']} "
                         f"| {_num(row['old'])} | {_num(row['new'])} | {_num(row['ratio'], 'x')} "
                         f"| {word(row)} |")  # fmt: skip
    if comparison["socat_ratios"]:
        lines += ["", "| scenario | metric | path | old x socat | new x socat | change | verdict "
                  "| target |", "|---|---|---|---:|---:|---:|---|---|"]  # fmt: skip
        for row in comparison["socat_ratios"]:
            lines.append(f"| {row['scenario']} | {row['metric']} | {row['path']} "
                         f"| {_num(row['old'], 'x')} | {_num(row['new'], 'x')} "
                         f"| {_num(row['change'], 'x')} | {word(row)} "
                         f"| {row['target']} |")  # fmt: skip
    if comparison["errors"]:
        lines += ["", "| scenario | path | old error | new error |", "|---|---|---|---|"]
        for row in comparison["errors"]:
            old_error, new_error = (str(row[k] or "")[:60] for k in ("old", "new"))
            lines.append(f"| {row['scenario']} | {row['path']} | {old_error} | {new_error} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the comparison of two result files as Markdown (or JSON with `--json`)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", type=Path, help="the earlier result JSON")
    parser.add_argument("new", type=Path, help="the later result JSON")
    parser.add_argument("--noise", type=float, default=0.1,
                        help="relative band reported as 'same' (default 0.1: ±10%%)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    comparison = compare(
        json.loads(args.old.read_text()), json.loads(args.new.read_text()), args.noise
    )
    if args.json:
        json.dump(comparison, sys.stdout, indent=2)
        print()
    else:
        print(markdown(comparison))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
