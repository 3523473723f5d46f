"""`portway check NAME`: diagnose a tunnel through the real path and print each step."""

from __future__ import annotations

from typing import Any

import click

from portway.cli.common import ApiOptions, Columns, api_options, table, when

# The hub answers within its own 30 s bound whatever the target does; leave room for that.
CHECK_TIMEOUT = 45.0
MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "-"}


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} ms"


def _first_failure(run: dict[str, Any]) -> str | None:
    failed = next((s for s in run["steps"] if s["status"] == "fail"), None)
    return None if failed is None else f"{failed['name']}: {failed['detail']}"


# The table of `check --history`: one row per kept run.
HISTORY: Columns = [
    ("WHEN", lambda r: when(r["createdAt"])),
    ("RESULT", lambda r: "ok" if r["ok"] else "FAIL"),
    ("LATENCY", lambda r: _ms(r["latencyMs"])),
    ("FAILED STEP", _first_failure),
]


def print_diagnostic(run: dict[str, Any]) -> None:
    table(
        run["steps"],
        [
            ("STEP", lambda s: s["name"]),
            ("RESULT", lambda s: MARKS.get(s["status"], s["status"])),
            ("TIME", lambda s: _ms(s["ms"])),
            ("DETAIL", lambda s: s["detail"]),
        ],
    )
    detected = run.get("detected")
    if detected is not None:
        version = f" {detected['version']}" if detected.get("version") else ""
        click.echo(f"\nDetected: {detected['protocol']}{version}")


@click.command()
@click.argument("tunnel")
@click.option("--history", is_flag=True, help="List the kept runs instead of running a new one.")
@api_options
def check(tunnel: str, history: bool, api: ApiOptions) -> None:
    """Diagnose TUNNEL (name or id): agent, DNS, TCP, TLS, handshake and round trip.

    Exits with status 1 when a step failed, so scripts can gate on it.
    """
    with api.client(timeout=CHECK_TIMEOUT) as client:
        if history:
            runs = client.get(f"/v1/tunnels/{tunnel}/diagnostics")["items"]
            api.output.result(runs, lambda: table(runs, HISTORY))
            return
        run = client.post(f"/v1/tunnels/{tunnel}/diagnostics")
    api.output.result(run, lambda: print_diagnostic(run))
    if not run["ok"]:
        raise SystemExit(1)
