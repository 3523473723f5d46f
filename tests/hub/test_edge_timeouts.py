"""The edge's client timeouts: their hub settings (flag > env > file > default, validated) and the
`Watchdog` that enforces them (a fixed head deadline, a body deadline that moves with every read
unless the edge itself stopped reading, one timer re-armed lazily)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from portway.errors import ConfigError
from portway.hub.config import load_hub_config
from portway.hub.edge.timeouts import Phase, Timeouts, Watchdog
from portway.testing.waiting import async_wait_until


def test_defaults_follow_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_hub_config({}, {})
    assert (config.edge_head_timeout, config.edge_idle_timeout, config.edge_body_timeout) == (
        15.0, 75.0, 60.0,
    )  # fmt: skip


def test_precedence_and_toml(tmp_path: Path) -> None:
    file = tmp_path / "hub.toml"
    file.write_text("edge-head-timeout = 5\nedge_idle_timeout = 2.5\nedge-body-timeout = 9\n")
    env = {"PORTWAY_EDGE_IDLE_TIMEOUT": "30", "PORTWAY_EDGE_BODY_TIMEOUT": "0.25"}
    config = load_hub_config({"edge_body_timeout": "7"}, env, file)
    assert config.edge_head_timeout == 5.0  # file
    assert config.edge_idle_timeout == 30.0  # env beats file
    assert config.edge_body_timeout == 7.0  # flag beats env


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", "100000"])
def test_invalid_timeouts_name_their_source(value: str) -> None:
    with pytest.raises(ConfigError, match="PORTWAY_EDGE_HEAD_TIMEOUT"):
        load_hub_config({}, {"PORTWAY_EDGE_HEAD_TIMEOUT": value})


class Recorder:
    def __init__(self, timeouts: Timeouts) -> None:
        self.expired: list[tuple[Phase, bool, float]] = []
        self.excused = False
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.dog = Watchdog(timeouts, self._expired, lambda: self.excused)

    async def fired(self) -> tuple[Phase, bool, float]:
        async def seen() -> bool:
            return bool(self.expired)

        await async_wait_until(seen, timeout=5, what="the watchdog to fire")
        [only] = self.expired
        return only

    def _expired(self, phase: Phase, partial: bool) -> None:
        self.expired.append((phase, partial, self.loop.time() - self.started))


async def test_head_deadline_does_not_move_with_bytes() -> None:
    rec = Recorder(Timeouts(head=0.3, idle=5, body=5))
    rec.dog.start(Phase.HEAD)
    for _ in range(5):
        await asyncio.sleep(0.1)
        rec.dog.received()
        if rec.expired:
            break
    phase, partial, at = await rec.fired()
    assert phase is Phase.HEAD and partial and 0.3 <= at < 0.8


async def test_idle_turns_into_a_fresh_head_deadline_on_the_first_byte() -> None:
    rec = Recorder(Timeouts(head=0.2, idle=0.3, body=5))
    rec.dog.start(Phase.IDLE)
    await asyncio.sleep(0.15)
    rec.dog.received()
    assert rec.dog.phase is Phase.HEAD
    phase, partial, at = await rec.fired()
    assert phase is Phase.HEAD and partial and 0.35 <= at < 0.9


async def test_body_deadline_moves_with_reads_and_waits_while_excused() -> None:
    rec = Recorder(Timeouts(head=5, idle=5, body=0.2))
    rec.dog.start(Phase.BODY)
    for _ in range(4):  # steady reads keep it alive
        await asyncio.sleep(0.1)
        rec.dog.received()
    rec.excused = True  # the edge stopped reading (backpressure): the client is not at fault
    await asyncio.sleep(0.5)
    assert rec.expired == []
    rec.excused = False
    phase, partial, _ = await rec.fired()
    assert phase is Phase.BODY and not partial


async def test_stop_cancels_the_timer() -> None:
    rec = Recorder(Timeouts(head=0.05, idle=0.05, body=0.05))
    rec.dog.start(Phase.HEAD)
    rec.dog.stop()
    await asyncio.sleep(0.15)
    assert rec.expired == [] and rec.dog.phase is None
