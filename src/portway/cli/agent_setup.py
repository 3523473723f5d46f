"""What `up`, `expose` and `reach` share: the pinned agent endpoint, the agent identity, and
running an `AgentRuntime` in the foreground until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from portway.agent.runtime import AgentRefused, AgentRuntime
from portway.agent.settings import AgentSettings
from portway.cli.common import ApiOptions
from portway.cli.output import Output
from portway.cli.profile import Profile, load_profile, profile_lock, save_profile
from portway.client import PortwayClient
from portway.domain.addresses import AddressError, HostPort, parse_host_port
from portway.domain.dial_policy import PolicyError, TargetPolicy
from portway.errors import ConfigError
from portway.net import identity
from portway.net.tls import normalize_fingerprint


def pin_endpoint(profile: Profile, info: dict[str, Any], explicit_pin: str | None) -> None:
    """Record the hub's agent endpoint and CA in `profile`, checking it against a known pin.

    `portway login` calls this with the pin the user typed (if any); `up` calls it only when
    the profile has no endpoint yet (trust on first use, as ssh does).
    """
    endpoint = info.get("agentEndpoint")
    if not endpoint:
        raise ConfigError("this hub has no agent endpoint")
    reported = endpoint.get("caFingerprint")
    if endpoint["tls"]:
        expected = explicit_pin or profile.ca_fingerprint
        if expected and normalize_fingerprint(expected) != normalize_fingerprint(reported or ""):
            raise ConfigError(
                f"the hub's CA fingerprint is {reported}, not the pinned {expected}: if the hub "
                "was reinstalled, run 'portway login' again with --ca-fingerprint set to it"
            )
    host = endpoint["host"]
    profile.agent_endpoint = (
        f"[{host}]:{endpoint['port']}" if ":" in host else f"{host}:{endpoint['port']}"
    )
    profile.agent_tls = "on" if endpoint["tls"] else "off"
    profile.ca_fingerprint = reported
    profile.ca_certificate = endpoint.get("caCertificate")


def ensure_agent(
    api: ApiOptions, client: PortwayClient, *, name: str | None, label: str | None
) -> Profile:
    """The profile with an agent identity and a pinned endpoint, enrolling on first use."""
    with profile_lock():
        profile = load_profile(api.profile_name)
        if not profile.agent_endpoint:
            pin_endpoint(profile, client.get("/v1/hub"), None)
        if not (profile.agent_id and profile.agent_token):
            body = {"name": name, "label": label or socket.gethostname()[:200]}
            created = client.post("/v1/agents", {k: v for k, v in body.items() if v})
            profile.agent_id, profile.agent_token = created["id"], created["token"]
            click.echo(
                f"Enrolled this machine as agent {created['name']} ({created['id']}).", err=True
            )
        if not profile.agent_key:  # made here, once; it never leaves this machine
            profile.agent_key = identity.new_key().decode()
        if api.hub and not profile.hub:
            profile.hub = api.hub
        save_profile(profile, api.profile_name)
    return profile


def direct_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--direct-listen`, `--advertise` and `--no-direct` of the commands that serve tunnels."""
    for option in reversed(
        [
            click.option(
                "--direct-listen", metavar="HOST:PORT",
                help="Where reaching agents may connect directly (default: every address, a "
                "free port).",
            ),
            click.option(
                "--advertise", multiple=True, metavar="HOST:PORT",
                help="Another address reaching agents may try (a port forward, a public IP).",
            ),
            click.option(
                "--no-direct", "no_direct", is_flag=True,
                help="Take no direct connections: reach to this agent's tunnels is relayed.",
            ),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


sessions_option = click.option(
    "--sessions", type=click.IntRange(1, 8), default=2, show_default=True,
    envvar="PORTWAY_SESSIONS", help="Connections to keep to the hub; streams share them.",
)  # fmt: skip


def settings_from(
    profile: Profile,
    *,
    serve: bool,
    hold_binds: bool,
    allow: tuple[str, ...] = (),
    deny: tuple[str, ...] = (),
    sessions: int = 2,
    direct: bool = True,
    direct_listen: str | None = None,
    advertise: tuple[str, ...] = (),
) -> AgentSettings:
    assert profile.agent_endpoint and profile.agent_token
    endpoint = parse_host_port(profile.agent_endpoint)
    try:
        policy = TargetPolicy.from_flags(allow, deny)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    listen = ("", 0)
    if direct_listen:
        where = _address("--direct-listen", direct_listen, allow_zero_port=True)
        listen = (where.host, where.port)
    advertised = tuple(str(_address("--advertise", a)) for a in advertise)
    return AgentSettings(
        host=endpoint.host, port=endpoint.port, token=profile.agent_token,
        tls=profile.agent_tls != "off", ca_certificate=profile.ca_certificate,
        ca_fingerprint=profile.ca_fingerprint, serve=serve, hold_binds=hold_binds, policy=policy,
        sessions=sessions,
        identity_key=profile.agent_key.encode() if profile.agent_key else None,
        direct=direct, direct_listen=listen, advertise=advertised,
    )  # fmt: skip


def _address(flag: str, value: str, *, allow_zero_port: bool = False) -> HostPort:
    try:
        return parse_host_port(value, allow_zero_port=allow_zero_port)
    except AddressError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


PATHS = {
    "direct": "Connections to {} go directly to the exposing agent.",
    "relayed": "Connections to {} are relayed by the hub.",
}


def reporter(output: Output) -> Callable[[str, dict[str, Any]], None]:
    """Print the runtime's state changes: one plain line each, or JSON lines with --json."""
    messages: dict[str, Callable[[dict[str, Any]], str]] = {
        "connected": lambda i: "Connected to the hub.",
        "disconnected": lambda i: f"Lost the hub ({i.get('error') or i.get('reason')}).",
        "retrying": lambda i: f"Reconnecting in {i['in']}s…",
        "target_error": lambda i: f"Tunnel {i['tunnel']}: {i['message']}",
        "bound": lambda i: f"Reaching {i['tunnel']} on localhost:{i['port']}",
        "reach_rejected": lambda i: f"Connection refused by the hub: {i['message']}",
        "e2e_refused": lambda i: f"End-to-end check failed, connection closed: {i['error']}",
        "not_e2e": lambda i: f"Reach to {i['tunnel']} is not end-to-end encrypted: {i['why']}",
        "path": lambda i: PATHS[i["path"]].format(i["tunnel"]),
    }
    paths: dict[str, str] = {}  # tunnel -> the path its last connection took

    def report(event: str, info: dict[str, Any]) -> None:
        say = messages.get(event)
        if event == "path" and paths.get(info["tunnel"]) == info["path"]:
            say = None  # every connection is a JSON line; people hear of changes only
        paths.update({info["tunnel"]: info["path"]} if event == "path" else {})
        output.line({"event": event, **info}, lambda: say(info) if say else None, err=True)

    return report


def loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def run_foreground(
    runtime: AgentRuntime,
    prepare: Callable[[AgentRuntime], Awaitable[None]] | None = None,
    cleanup: Callable[[], None] | None = None,
) -> None:
    """Run `runtime` until SIGINT/SIGTERM; `prepare` runs first (e.g. binding reach ports)."""
    from portway import logs

    logs.configure("warning", "text")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if prepare is not None:
            await prepare(runtime)
        task = asyncio.create_task(runtime.run())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        await runtime.stop()
        if task.done():
            task.result()  # re-raise AgentRefused
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    except AgentRefused as exc:
        click.echo(f"error: the hub refused this agent: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: {exc.strerror or exc}", err=True)
        sys.exit(1)
    finally:
        if cleanup is not None:
            cleanup()
