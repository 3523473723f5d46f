"""A diagnosis's `tcp` step hands its connection to the probes: the target sees one connection
fewer than the `tcp` step plus a full `detect` would cost (the runner's greeting wait rides on
it; each probe after that still gets a fresh one)."""

from __future__ import annotations

from portway.agent.dialer import Dialer
from portway.agent.probing import diagnose
from portway.domain.dial_policy import TargetPolicy
from portway.testing.mongo_origin import MongoOrigin
from portway.wire.assignment_messages import Assign, AssignMode, Diagnosis
from portway.wire.control_messages import Protocol
from tests.probe.fakes import BannerServer, RecordingRelay


async def _diagnose(port: int) -> Diagnosis:
    assign = Assign(
        conn="c1", mode=AssignMode.DIAGNOSE, tunnel="t1", protocol=Protocol.TCP,
        host="127.0.0.1", port=port,
    )  # fmt: skip
    return await diagnose(Dialer(TargetPolicy()), assign)


def _status(result: Diagnosis) -> dict[str, str]:
    return {step.name: step.status for step in result.steps}


async def test_a_greeting_target_is_connected_to_once() -> None:
    async with BannerServer(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n") as ssh:
        result = await _diagnose(ssh.port)
        assert ssh.received == [b""]  # the tcp step's connection heard the banner
    assert _status(result)["tcp"] == "ok" and _status(result)["handshake"] == "ok"
    assert result.detected is not None and result.detected.protocol == "tcp"


async def test_client_first_probes_still_get_a_connection_each() -> None:
    async with MongoOrigin() as mongo, RecordingRelay(mongo.port) as relay:
        result = await _diagnose(relay.port)
        received = list(relay.received)
    assert result.detected is not None and result.detected.protocol == "mongodb"
    assert _status(result)["handshake"] == "ok"
    # The tcp step's connection waited for a greeting and heard none; then one per probe tried.
    assert received[0] == b"" and all(received[1:])
    assert received[-1][12:16] == (2013).to_bytes(4, "little")  # OP_MSG `hello`, last
