"""`portway env` and `portway doctor` against a real hub, real agents and a real origin."""

from __future__ import annotations

import json
import socket
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from portway.net.tls import ensure_hub_certificates
from portway.testing.hub import HubProcess
from portway.testing.machines import Machine
from portway.testing.origins import EchoOrigin
from portway.testing.ports import free_port
from portway.testing.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def echo() -> Iterator[EchoOrigin]:
    with EchoOrigin() as origin:
        yield origin


@pytest.fixture
def expose(
    machine: Callable[[str], Machine], api: httpx.Client, echo: EchoOrigin
) -> Callable[[str], None]:
    """Expose the echo origin as tunnel `name` with a real `portway expose` on its own machine,
    once active. Function-scoped like `machine`: each test's processes stop with it."""

    def make(name: str) -> None:
        server = machine(f"{name}-server")
        server.start("expose", f"127.0.0.1:{echo.port}", "--name", name).wait_for(
            "Connected to the hub."
        )
        wait_until(
            lambda: api.get(f"/v1/tunnels/{name}").json().get("status") == "active",
            timeout=20, what=f"{name} to become active",
        )  # fmt: skip

    return make


@pytest.fixture
def reached(
    machine: Callable[[str], Machine], expose: Callable[[str], None]
) -> Callable[[str], tuple[Machine, int]]:
    """Expose `name` and reach it from a laptop with `portway reach` on a free local port:
    the laptop and that port."""

    def make(name: str) -> tuple[Machine, int]:
        expose(name)
        laptop = machine(f"{name}-laptop")
        local = free_port()
        laptop.start("reach", name, "--port", str(local)).wait_for("Connected to the hub.")
        return laptop, local

    return make


@pytest.fixture
def up(
    machine: Callable[[str], Machine], expose: Callable[[str], None]
) -> Callable[[str], tuple[Machine, str]]:
    """Expose `name` and run `portway up` on a laptop (no connection yet): the laptop and its
    agent id."""

    def make(name: str) -> tuple[Machine, str]:
        expose(name)
        laptop = machine(f"{name}-laptop")
        laptop.start("up").wait_for("Connected to the hub.")
        profile = tomllib.loads((laptop.home / "config.toml").read_text())["profiles"]["default"]
        return laptop, str(profile["agent_id"])

    return make


def doctor(machine: Machine, *args: str) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Exit code and the findings grouped by check."""
    result = machine.run("doctor", "--json", *args, check=False, timeout=60)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for finding in json.loads(result.stdout):
        grouped.setdefault(finding["check"], []).append(finding)
    return result.returncode, grouped


def test_env_prints_writes_and_refuses_names_not_reached(
    reached: Callable[[str], tuple[Machine, int]], expose: Callable[[str], None], tmp_path: Path
) -> None:
    laptop, local = reached("env-echo")
    state = list((laptop.home / "reaching" / "default").glob("env-echo.*.json"))
    assert len(state) == 1 and json.loads(state[0].read_text())["localPort"] == local

    printed = laptop.run("env", "env-echo").stdout.splitlines()
    assert printed == [
        "ENV_ECHO_HOST=localhost",
        f"ENV_ECHO_PORT={local}",
        f"ENV_ECHO_URL=tcp://localhost:{local}",
    ]
    assert laptop.json("env", "env-echo")["ENV_ECHO_PORT"] == str(local)

    dotenv = tmp_path / ".env"
    dotenv.write_text("# app settings\nDEBUG=1\nENV_ECHO_PORT=1\nexport ENV_ECHO_HOST=old\n")
    laptop.run("env", "env-echo", "--output", str(dotenv))
    assert dotenv.read_text() == (
        "# app settings\nDEBUG=1\n"
        f"ENV_ECHO_PORT={local}\nENV_ECHO_HOST=localhost\nENV_ECHO_URL=tcp://localhost:{local}\n"
    )

    before = dotenv.read_text()
    missing = laptop.run("env", "env-echo", "ghost-db", "--output", str(dotenv), check=False)
    assert missing.returncode == 1
    assert "ghost-db: the hub has no such tunnel" in missing.stderr
    expose("other-echo")
    missing = laptop.run("env", "env-echo", "other-echo", "--output", str(dotenv), check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "error: other-echo is not being reached here; run: portway reach other-echo"
    )
    assert dotenv.read_text() == before  # nothing partially written

    laptop.stop_all()  # Ctrl-C: the reach removes its state file
    assert not list((laptop.home / "reaching" / "default").glob("*.json"))
    assert laptop.run("env", "env-echo", check=False).returncode == 1


def test_env_finds_connections_held_by_portway_up(
    up: Callable[[str], tuple[Machine, str]], api: httpx.Client
) -> None:
    laptop, agent_id = up("up-echo")
    local = free_port()
    created = api.post(
        "/v1/tunnels/up-echo/connect", json={"agentId": agent_id, "localPort": local}
    )
    assert created.status_code == 201, created.text
    wait_until(
        lambda: api.get("/v1/tunnels/up-echo/connections").json()["items"][0]["status"] == "bound",
        timeout=10, what="the connection to be bound",
    )  # fmt: skip
    assert laptop.json("env", "up-echo") == {
        "UP_ECHO_HOST": "localhost",
        "UP_ECHO_PORT": str(local),
        "UP_ECHO_URL": f"tcp://localhost:{local}",
    }
    code, found = doctor(laptop)
    assert code == 0, found
    assert found["ports"][0]["status"] == "ok"
    assert "portway up" in found["ports"][0]["message"]


def test_doctor_is_all_ok_on_a_healthy_machine(
    reached: Callable[[str], tuple[Machine, int]],
) -> None:
    laptop, local = reached("doc-echo")
    code, found = doctor(laptop)
    assert code == 0, found
    assert {f["status"] for group in found.values() for f in group} == {"ok"}
    assert list(found) == ["profile", "hub", "api-key", "agent-tls", "clock", "agent", "ports"]
    assert f"doc-echo on localhost:{local}: held by portway reach" in found["ports"][0]["message"]
    text = laptop.run("doctor").stdout
    assert text.startswith("ok") and "FAIL" not in text


def test_doctor_reports_a_hub_that_is_down(tmp_path: Path) -> None:
    own = HubProcess(tmp_path / "own-hub")  # not the module's hub: this one is stopped
    own.start()
    try:
        laptop = Machine(tmp_path / "down-laptop", own)
        laptop.login()
    finally:
        own.stop()
    code, found = doctor(laptop)
    assert code == 1
    assert found["hub"][0]["status"] == "fail"
    assert "cannot reach the hub" in found["hub"][0]["message"]
    assert found["hub"][0]["hint"].startswith("start the hub, or fix the URL: portway login")
    assert found["agent-tls"][0]["status"] == "fail"  # its agent port is gone too
    assert {found[c][0]["status"] for c in ("api-key", "clock")} == {"skip"}
    wrong = doctor(laptop, "--hub", f"http://127.0.0.1:{free_port()}")
    assert wrong[0] == 1 and wrong[1]["hub"][0]["status"] == "fail"


def test_doctor_reports_a_changed_hub_ca(machine: Callable[[str], Machine], tmp_path: Path) -> None:
    laptop = machine("pin-laptop")
    config = laptop.home / "config.toml"
    doc = tomllib.loads(config.read_text())
    other = ensure_hub_certificates(tmp_path / "other-ca")
    doc["profiles"]["default"]["ca_fingerprint"] = other.fingerprint
    config.write_text(tomli_w.dumps(doc))
    code, found = doctor(laptop)
    assert code == 1
    tls = found["agent-tls"][0]
    assert tls["status"] == "fail" and "the hub's CA changed" in tls["message"]
    assert "portway login" in tls["hint"]
    # The saved CA itself no longer matches the pin: caught even without the hub's answer.
    doc["profiles"]["default"]["ca_certificate"] = other.ca_pem().decode()
    doc["profiles"]["default"]["ca_fingerprint"] = "AB" * 32
    config.write_text(tomli_w.dumps(doc))
    code, found = doctor(laptop, "--hub", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "does not match the saved hub CA" in found["agent-tls"][0]["message"]


def test_doctor_reports_a_local_port_held_by_another_process(
    up: Callable[[str], tuple[Machine, str]], api: httpx.Client
) -> None:
    laptop, agent_id = up("busy-echo")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        body = {"agentId": agent_id, "localPort": port}
        assert api.post("/v1/tunnels/busy-echo/connect", json=body).status_code == 201
        code, found = doctor(laptop)
    assert code == 1, found
    ports = found["ports"][0]
    assert ports["status"] == "fail"
    assert f"busy-echo on localhost:{port}: port held by" in ports["message"]
    assert "another localPort" in ports["hint"]
