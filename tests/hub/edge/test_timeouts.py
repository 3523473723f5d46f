"""The edge's client timeouts: their hub settings (flag > env > file > default, validated) and the
`Watchdog` that enforces them (a fixed head deadline, a body deadline that moves with every read
unless the edge itself stopped reading, one timer re-armed lazily)."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from portway.errors import ConfigError
from portway.hub.core.config import load_hub_config
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


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock: when nothing is ready it jumps straight to the next timer
    instead of waiting for it, so the `Watchdog` (which only knows `loop.time()` and `call_at`)
    sees exact, repeatable times and a test of seconds takes milliseconds."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only I/O can wake the loop
            return super().select(None)
        self._loop.now += timeout  # the next timer is due now
        return []


def virtual_time(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a `VirtualClockLoop` (a plain function, so pytest-asyncio leaves it)."""

    def run() -> None:
        with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
            runner.run(test())

    run.__name__ = run.__qualname__ = test.__name__
    run.__doc__ = test.__doc__
    return run


async def elapse(seconds: float) -> None:
    """Let exactly `seconds` of virtual time pass (timers due meanwhile fire in order)."""
    assert isinstance(asyncio.get_running_loop(), VirtualClockLoop), "never a real sleep"
    await asyncio.sleep(seconds)


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


@virtual_time
async def test_head_deadline_does_not_move_with_bytes() -> None:
    rec = Recorder(Timeouts(head=0.3, idle=5, body=5))
    rec.dog.start(Phase.HEAD)
    for _ in range(10):  # a slowloris client: a byte every 0.1 s until it is cut (1 s at most)
        await elapse(0.1)
        rec.dog.received()
        if rec.expired:
            break
    phase, partial, at = await rec.fired()
    assert phase is Phase.HEAD and partial and at == pytest.approx(0.3)


@virtual_time
async def test_idle_turns_into_a_fresh_head_deadline_on_the_first_byte() -> None:
    rec = Recorder(Timeouts(head=0.2, idle=0.3, body=5))
    rec.dog.start(Phase.IDLE)
    await elapse(0.15)  # the next request starts halfway through the idle timeout
    rec.dog.received()
    assert rec.dog.phase is Phase.HEAD
    phase, partial, at = await rec.fired()
    assert phase is Phase.HEAD and partial and at == pytest.approx(0.15 + 0.2)


@virtual_time
async def test_body_deadline_moves_with_reads_and_waits_while_excused() -> None:
    rec = Recorder(Timeouts(head=5, idle=5, body=0.2))
    rec.dog.start(Phase.BODY)
    for _ in range(4):  # steady reads keep it alive: 0.4 s in all, twice the body timeout
        await elapse(0.1)
        rec.dog.received()
    assert rec.expired == []
    rec.excused = True  # the edge stopped reading (backpressure): the client is not at fault
    await elapse(0.5)  # more than twice the body timeout
    assert rec.expired == []
    rec.excused = False
    excused_until = rec.loop.time() - rec.started
    phase, partial, at = await rec.fired()
    assert phase is Phase.BODY and not partial
    assert excused_until < at <= excused_until + 0.2 + 1e-9  # within a body timeout of it


@virtual_time
async def test_stop_cancels_the_timer() -> None:
    rec = Recorder(Timeouts(head=0.05, idle=0.05, body=0.05))
    rec.dog.start(Phase.HEAD)
    rec.dog.stop()
    await elapse(0.15)  # three times every deadline
    assert rec.expired == [] and rec.dog.phase is None
