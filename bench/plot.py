"""PNG charts of a benchmark result: `python -m bench.plot RESULT.json [--out DIR]`.

Run by hand on a file from bench/results/, or by the bench runner after a run through
`write_charts(payload, out_dir, stamp)`. Writes, into the JSON's directory unless `--out` says
otherwise:

* `<stamp>-ratios.png`: one panel per figure of `report.ROWS` (and per scenario of `PRIMARY`
  the rows do not cover), a horizontal bar per path with its value / socat's (direct's when
  socat was not measured; the raw value when neither was), a line at 1.0;
* `<stamp>-<curve>.png` for each entry of the JSON's "curves": one panel per metric, one line
  per path over a log-scale x.

Errored or missing cells are left out. Draws with matplotlib's Agg canvas (no display, no
pyplot state), so it is safe to call from any process.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench import report
from bench.compare import higher_is_better, number

# The figure charted for scenarios that report.ROWS does not list (or lists several of).
PRIMARY: dict[str, str] = {
    "tcp_bulk": "gbit_s",
    "tcp_bulk_p8": "gbit_s",
    "tcp_bulk_reverse": "gbit_s",
    "new_connections": "rps",
    "http_keepalive": "rps",
    "udp": "delivered_mbit_s",
    "idle_memory": "hub_kib_per_conn",
    "hub_restart": "serving_s",
    "session_count": "agent_connections_with_streams",
    "redis_get_c1": "rps",
    "redis_get_c50": "rps",
    "redis_set_c1": "rps",
    "redis_set_c50": "rps",
    "pgbench_c1": "tps",
    "pgbench_c16": "tps",
}

COLUMNS = 3
WIDTH_IN, DPI = 16.0, 100  # 1,600 px wide
PORTWAY_COLOUR, BASELINE_COLOUR, REFERENCE_COLOUR = "tab:blue", "0.65", "0.35"

Panel = tuple[str, str, str]  # scenario, metric, title


def _panels(results: dict[str, Any]) -> list[Panel]:
    """report.ROWS first, then the PRIMARY figure of each other scenario in the results."""
    panels = [(scenario, metric, f"{label} ({unit})")
              for scenario, metric, unit, label, _higher in report.ROWS]  # fmt: skip
    listed = {scenario for scenario, *_ in report.ROWS}
    for scenario in results:
        if scenario not in listed and scenario in PRIMARY:
            panels.append((scenario, PRIMARY[scenario], scenario))
    return panels


def _values(
    results: dict[str, Any], scenario: str, metric: str, order: list[str]
) -> dict[str, float]:
    """Each path's numeric value of `metric`, in the run's path order."""
    entries = results.get(scenario)
    if not isinstance(entries, dict):
        return {}
    paths = order + [path for path in entries if path not in order]
    out = {}
    for path in paths:
        entry = entries.get(path)
        value = number(entry.get(metric)) if isinstance(entry, dict) else None
        if value is not None and math.isfinite(value):
            out[path] = value
    return out


def _direction(scenario: str, metric: str) -> str:
    return "higher is better" if higher_is_better(scenario, metric) else "lower is better"


def _bar_panel(ax: Axes, panel: Panel, values: dict[str, float]) -> None:
    scenario, metric, title = panel
    reference = next((p for p in ("socat", "direct") if values.get(p)), None)
    base = values[reference] if reference else 1.0
    paths = list(values)
    shown = [values[path] / base for path in paths]
    colours = [REFERENCE_COLOUR if path == reference else
               BASELINE_COLOUR if path in report.BASELINES else PORTWAY_COLOUR
               for path in paths]  # fmt: skip
    positions = list(range(len(paths)))
    ax.barh(positions, shown, color=colours)
    ax.set_yticks(positions, labels=paths, fontsize=8)
    ax.invert_yaxis()
    suffix = "x" if reference else ""
    for position, ratio in zip(positions, shown, strict=True):
        ax.text(ratio, position, f" {ratio:.2f}{suffix}", va="center", fontsize=7)
    ax.set_xlim(0, max(shown, default=1.0) * 1.25 or 1.0)
    if reference:
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"{metric} / {reference}", fontsize=8)
    else:
        ax.set_xlabel(metric, fontsize=8)
    ax.set_title(f"{title}\n{scenario}.{metric}, {_direction(scenario, metric)}", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)


def ratio_chart(payload: dict[str, Any], path: Path) -> Path:
    """Write the bar chart of every figure against socat (see the module docstring)."""
    results = payload.get("results")
    results = results if isinstance(results, dict) else {}
    order = [p for p in payload.get("paths", []) if isinstance(p, str)]
    filled = [(panel, values) for panel in _panels(results)
              if (values := _values(results, panel[0], panel[1], order))]  # fmt: skip
    rows = max(1, math.ceil(len(filled) / COLUMNS))
    fig = Figure(figsize=(WIDTH_IN, 1.0 + 3.6 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"Portway benchmark {payload.get('timestamp', '')}: value / socat (or direct); "
                 "grey: baselines, dark grey: the reference, blue: Portway")  # fmt: skip
    for index, (panel, values) in enumerate(filled):
        _bar_panel(fig.add_subplot(rows, COLUMNS, index + 1), panel, values)
    if not filled:
        fig.text(0.5, 0.5, "no numeric results", ha="center", va="center")
    fig.savefig(path, format="png")
    return path


def _series(entries: Any, metric: str) -> list[tuple[float, float]]:
    """(x, value) of one path's curve points that carry both as finite positive-x numbers."""
    if not isinstance(entries, list):
        return []
    points = []
    for point in entries:
        if not isinstance(point, dict):
            continue
        x, y = number(point.get("x")), number(point.get(metric))
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            points.append((x, y))
    return sorted(points)


def _curve_metrics(paths: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The metrics curves_meta names, else every numeric key but x found in the points."""
    named = meta.get("metrics")
    if isinstance(named, list) and named:
        return [str(metric) for metric in named]
    found: dict[str, None] = {}
    for entries in paths.values():
        for point in entries if isinstance(entries, list) else []:
            if isinstance(point, dict):
                found.update(
                    (k, None) for k, v in point.items() if k != "x" and number(v) is not None
                )
    return list(found)


def curve_chart(name: str, paths: dict[str, Any], meta: dict[str, Any], path: Path) -> Path | None:
    """Write one curve's line chart, one panel per metric; None when it has no point at all."""
    metrics = _curve_metrics(paths, meta)
    lines = {metric: {p: s for p, e in paths.items() if (s := _series(e, metric))}
             for metric in metrics}  # fmt: skip
    metrics = [metric for metric in metrics if lines[metric]]
    if not metrics:
        return None
    given = meta.get("units")
    units: dict[str, Any] = given if isinstance(given, dict) else {}
    x_label = str(meta.get("x", "x"))
    fig = Figure(figsize=(WIDTH_IN, 5.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(str(meta.get("title", name)))
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), index + 1)
        for label, points in lines[metric].items():
            style = "--" if label in report.BASELINES else "-"
            ax.plot([x for x, _ in points], [y for _, y in points], style, marker="o", label=label)
        if all(x > 0 for points in lines[metric].values() for x, _ in points):
            ax.set_xscale("log")
        # Latencies span orders of magnitude between 1 and 1,000 connections.
        if metric.endswith("_ms") and all(y > 0 for pts in lines[metric].values() for _, y in pts):
            ax.set_yscale("log")
        unit = units.get(metric)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
        ax.set_title(f"{metric}, {_direction(name, metric)}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, format="png")
    return path


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "curve"


def write_charts(payload: dict[str, Any], out_dir: Path, stamp: str) -> list[Path]:
    """Write `<stamp>-ratios.png` and one `<stamp>-<curve>.png` per curve into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [ratio_chart(payload, out_dir / f"{stamp}-ratios.png")]
    curves = payload.get("curves")
    all_meta = payload.get("curves_meta")
    for name, paths in (curves if isinstance(curves, dict) else {}).items():
        if not isinstance(paths, dict):
            continue
        meta = all_meta.get(name) if isinstance(all_meta, dict) else None
        chart = curve_chart(str(name), paths, meta if isinstance(meta, dict) else {},
                            out_dir / f"{stamp}-{_file_part(str(name))}.png")  # fmt: skip
        if chart is not None:
            written.append(chart)
    return written


def main(argv: list[str] | None = None) -> int:
    """Chart one result file and print the paths written."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.plot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("result", type=Path, help="a result JSON from bench/results/")
    parser.add_argument("--out", type=Path, help="directory for the PNGs (default: the JSON's)")
    args = parser.parse_args(argv)
    payload = json.loads(args.result.read_text())
    for written in write_charts(payload, args.out or args.result.parent, args.result.stem):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
