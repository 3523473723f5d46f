"""`bench.tools._iperf3` runs a test again only when it failed before measuring anything.

A stand-in `iperf3` (a script printing iperf3's JSON) answers each run from a list, so the test
sees exactly how many runs were made.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import tools

NOT_STARTED = {"intervals": [], "error": "control socket has closed unexpectedly"}
MID_TEST = {"intervals": [{"sum": {}}], "error": "control socket has closed unexpectedly"}
DONE = {"intervals": [{"sum": {}}], "end": {"sum_received": {"bits_per_second": 1e9}}}


def fake_iperf3(tmp_path: Path, answers: list[dict[str, Any]]) -> tuple[list[str], Path]:
    """A command printing `answers` one per run (exit 1 on an error), and its run counter."""
    counter = tmp_path / "runs"
    counter.write_text("0")
    script = tmp_path / "iperf3.py"
    script.write_text(
        "import json, sys\n"
        f"counter = {str(counter)!r}\n"
        "n = int(open(counter).read())\n"
        "open(counter, 'w').write(str(n + 1))\n"
        f"answer = {json.dumps(answers)!r}\n"
        "report = json.loads(answer)[n]\n"
        "print(json.dumps(report))\n"
        "sys.exit(1 if 'error' in report else 0)\n"
    )
    return [sys.executable, str(script)], counter


@pytest.mark.timeout(30)
def test_a_test_that_never_started_runs_again(tmp_path: Path) -> None:
    args, counter = fake_iperf3(tmp_path, [NOT_STARTED, NOT_STARTED, DONE])
    report = tools._iperf3(args, seconds=1)
    assert report["end"] == DONE["end"]
    assert counter.read_text() == "3"


@pytest.mark.timeout(30)
def test_a_test_that_failed_midway_is_not_run_again(tmp_path: Path) -> None:
    args, counter = fake_iperf3(tmp_path, [MID_TEST, DONE])
    with pytest.raises(tools.ToolError, match="control socket") as failed:
        tools._iperf3(args, seconds=1)
    assert not isinstance(failed.value, tools.NotStarted)
    assert counter.read_text() == "1"


@pytest.mark.timeout(30)
def test_the_last_try_reports_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "START_WITHIN", 0.5)
    args, counter = fake_iperf3(tmp_path, [NOT_STARTED] * 100)
    with pytest.raises(tools.NotStarted, match="control socket"):
        tools._iperf3(args, seconds=1)
    assert int(counter.read_text()) >= 2
