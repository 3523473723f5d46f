"""`portway doctor`: check this machine's setup end to end and say what to fix.

Each check is a small function registered with :func:`check`, run in order by
:func:`run_checks`; later checks read what earlier ones learnt from the shared :class:`Doctor`
(the hub's `Date` header, `GET /v1/hub`, the agent). A check returns one :class:`Finding` or a
list of them: `ok`, `warn`, `fail`, or `skip` when something it needs failed earlier. The
command exits 1 when any finding is `fail`. Adding a check is adding one decorated function.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

import click
import httpx

from portway.cli.common import ApiOptions, api_options, when
from portway.cli.group import HINTS
from portway.cli.profile import Profile, config_path, load_profile
from portway.cli.reaching import ReachState, describe_process, is_portway, live_reaches
from portway.cli.reaching import port_holders as holders_of
from portway.client import PortwayClient
from portway.domain.addresses import parse_host_port
from portway.errors import ApiError, ClientError, HubUnreachable
from portway.net.tls import PinMismatch, client_context

Status = Literal["ok", "warn", "fail", "skip"]
TIMEOUT = 5.0
MAX_SKEW = 5.0  # seconds; the hub's Date header has a resolution of one second
MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@dataclass
class Finding:
    check: str
    status: Status
    message: str
    hint: str | None = None


@dataclass
class Doctor:
    """What the checks share: the options, and facts learnt by earlier checks."""

    api: ApiOptions
    profile: Profile
    hub_date: datetime | None = None  # the hub's clock, from its Date header
    local_date: datetime | None = None  # our clock halfway through that request
    hub_info: dict[str, Any] | None = None  # GET /v1/hub, once the API key was accepted
    agent: dict[str, Any] | None = None
    reaches: list[ReachState] = field(default_factory=list)  # live `portway reach` processes

    def client(self) -> PortwayClient:
        return PortwayClient(self.api.hub or "", self.api.api_key, timeout=TIMEOUT)

    def login_command(self, *extra: str) -> str:
        profile = self.api.profile_name
        words = ["portway login --hub", self.api.hub or "URL", "--api-key KEY", *extra]
        return " ".join(words + ([f"--profile {profile}"] if profile != "default" else []))


Check = Callable[[Doctor], "Finding | list[Finding]"]
C = TypeVar("C", bound=Check)
CHECKS: list[tuple[str, Check]] = []


def check(name: str) -> Callable[[C], C]:
    """Register a check under `name` (the first column); checks run in registration order."""

    def register(fn: C) -> C:
        CHECKS.append((name, fn))
        return fn

    return register


def ok(message: str) -> Finding:
    return Finding("", "ok", message)


def warn(message: str, hint: str) -> Finding:
    return Finding("", "warn", message, hint)


def fail(message: str, hint: str) -> Finding:
    return Finding("", "fail", message, hint)


def skip(message: str) -> Finding:
    return Finding("", "skip", message)


@check("profile")
def local_profile(doc: Doctor) -> Finding:
    p, api, path = doc.profile, doc.api, config_path()
    name, relogin = api.profile_name, f"run: {doc.login_command()}"
    if not api.hub or not api.api_key:
        what = "no hub URL" if not api.hub else "no API key"
        where = f"no profile '{name}'" if p == Profile() else f"profile '{name}' has {what}"
        return fail(f"{where} in {path}", relogin)
    if not p.agent_endpoint:
        return warn(f"profile '{name}' has no agent endpoint pinned", relogin)
    if p.agent_tls != "off" and not (p.ca_fingerprint and p.ca_certificate):
        return fail("agent TLS is on but no hub CA is pinned", relogin)
    agent = f"agent {p.agent_id}" if p.agent_id else "no agent enrolled yet"
    return ok(f"profile '{name}': hub {api.hub}, {agent}")


@check("hub")
def hub_reachable(doc: Doctor) -> Finding:
    if not doc.api.hub:
        return skip("no hub URL to check")
    url = doc.api.hub.rstrip("/") + "/healthz"
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            started = time.monotonic()
            response = http.get(url)
            elapsed = time.monotonic() - started
    except httpx.HTTPError as exc:
        return fail(
            f"cannot reach the hub at {doc.api.hub}: {exc or type(exc).__name__}",
            f"start the hub, or fix the URL: {doc.login_command()}",
        )
    doc.local_date = datetime.fromtimestamp(time.time() - elapsed / 2, UTC)
    if date := response.headers.get("date"):
        doc.hub_date = parsedate_to_datetime(date)
    ms = f"{elapsed * 1000:.0f} ms"
    if response.status_code == 503:
        return fail(f"the hub cannot reach its store ({ms})", "see the hub's log, --database-url")
    if response.status_code != 200:
        return fail(f"{url} answered HTTP {response.status_code}", "is this a Portway hub?")
    version = response.json().get("version", "?")
    return ok(f"hub {doc.api.hub} answered in {ms} (version {version})")


@check("api-key")
def api_key(doc: Doctor) -> Finding:
    if not doc.api.api_key or not doc.local_date:
        return skip("not checked: no API key or no hub")
    try:
        with doc.client() as client:
            doc.hub_info = client.get("/v1/hub")
    except ApiError as exc:
        return fail(exc.message, HINTS.get(exc.code, "check the hub's log"))
    except ClientError as exc:
        return fail(str(exc), "run portway doctor again")
    workspace = doc.hub_info["workspace"]["name"] if doc.hub_info else "?"
    return ok(f"API key accepted (workspace {workspace})")


@check("agent-tls")
def pinned_ca(doc: Doctor) -> Finding:
    p = doc.profile
    if not p.agent_endpoint:
        return skip("no agent endpoint in the profile")
    endpoint = (doc.hub_info or {}).get("agentEndpoint")
    tls = p.agent_tls != "off"
    relogin = f"run: {doc.login_command()}"
    if endpoint is not None and endpoint["tls"] != tls:
        now = "on" if endpoint["tls"] else "off"
        return fail(f"the hub's agent port now has TLS {now}, not {p.agent_tls}", relogin)
    reported = endpoint.get("caFingerprint") if endpoint else None
    if tls and reported and p.ca_fingerprint and reported != p.ca_fingerprint:
        return fail(
            f"the hub's CA changed: pinned {p.ca_fingerprint[:23]}…, the hub "
            f"now has {reported[:23]}…",
            "if the hub was reinstalled on purpose, run: "
            + doc.login_command(f"--ca-fingerprint {reported}"),
        )
    repin = f"run: {doc.login_command('--ca-fingerprint FP')} (FP as the hub printed at start)"
    return _handshake(doc, repin)


def _handshake(doc: Doctor, repin: str) -> Finding:
    p = doc.profile
    assert p.agent_endpoint
    where = parse_host_port(p.agent_endpoint)
    context: ssl.SSLContext | None = None
    if p.agent_tls != "off":
        try:
            context = client_context(
                p.ca_certificate or "", p.ca_fingerprint or "", check_hostname=False
            )
        except (PinMismatch, ValueError):
            return fail("the pinned fingerprint does not match the saved hub CA", repin)
    started = time.monotonic()
    try:
        with socket.create_connection((where.host, where.port), timeout=TIMEOUT) as sock:
            if context is not None:
                context.wrap_socket(sock, server_hostname=where.host).close()
    except ssl.SSLCertVerificationError:
        return fail(f"the agent port {p.agent_endpoint} is not signed by the pinned CA", repin)
    except (OSError, ssl.SSLError) as exc:
        return fail(
            f"cannot connect to the agent port {p.agent_endpoint}: {exc}",
            "check that the hub runs and that --agent-listen is reachable from here",
        )
    ms = f"{(time.monotonic() - started) * 1000:.0f} ms"
    if context is None:
        return ok(f"agent port {p.agent_endpoint} answers (TLS off), {ms}")
    pin = (p.ca_fingerprint or "")[:11]
    return ok(f"agent port {p.agent_endpoint}: pinned CA {pin}… verified over TLS ({ms})")


@check("clock")
def clock_skew(doc: Doctor) -> Finding:
    if doc.hub_date is None or doc.local_date is None:
        return skip("not checked: no answer from the hub")
    # The Date header is truncated to the second: the hub's clock read hub_date + [0, 1).
    skew = (doc.local_date - doc.hub_date).total_seconds() - 0.5
    if abs(skew) <= MAX_SKEW:
        return ok(f"clock within {max(abs(skew), 1):.0f} s of the hub's")
    side = "ahead of" if skew > 0 else "behind"
    return warn(
        f"this machine's clock is {abs(skew):.0f} s {side} the hub's",
        "sync the clocks with NTP (e.g. timedatectl set-ntp true) here or on the hub; "
        "expiry times and signatures depend on them",
    )


@check("agent")
def agent_session(doc: Doctor) -> Finding:
    if not doc.profile.agent_id:
        return ok("no agent enrolled yet; portway up, expose or reach do it")
    if doc.hub_info is None:
        return skip("not checked: the hub API is not usable")
    if (problem := _fetch_agent(doc, doc.profile.agent_id)) is not None:
        return problem
    assert doc.agent is not None
    name = doc.agent["name"]
    if doc.agent["online"]:
        return ok(f"agent {name} is online")
    seen = when(at) if (at := doc.agent.get("lastSeenAt")) else "never"
    if doc.reaches:
        pids = ", ".join(str(r.pid) for r in doc.reaches)
        return fail(
            f"agent {name} is offline (last seen {seen}) while portway reach runs (pid {pids})",
            "see that command's output; the agent-tls line above may say why",
        )
    return warn(f"agent {name} is offline (last seen {seen})", "start it: portway up")


def _fetch_agent(doc: Doctor, agent_id: str) -> Finding | None:
    """Fill `doc.agent` from `GET /v1/agents/{id}`; a finding when that fails."""
    try:
        with doc.client() as client:
            doc.agent = client.get(f"/v1/agents/{agent_id}")
    except ApiError as exc:
        if exc.code != "agent_not_found":
            return fail(exc.message, "check the hub's log")
        return fail(
            f"this profile's agent {agent_id} no longer exists on the hub",
            f"delete agent_id and agent_token from [profiles.{doc.api.profile_name}] in "
            f"{config_path()}, then run: portway up",
        )
    except HubUnreachable as exc:
        return fail(str(exc), "run portway doctor again")
    return None


@check("ports")
def local_ports(doc: Doctor) -> list[Finding]:
    findings = [_reach_port(r) for r in doc.reaches]
    if doc.agent is not None:
        try:
            findings += _connection_ports(doc)
        except ClientError as exc:
            findings.append(fail(f"cannot list connections: {exc}", "run portway doctor again"))
    return findings or [ok("no tunnels being reached here")]


def _reach_port(state: ReachState) -> Finding:
    label = f"{state.name} on {state.local_host}:{state.local_port}"
    holders = holders_of(state.local_port, udp=state.protocol == "udp")
    if state.pid in holders.pids:
        return ok(f"{label}: held by {describe_process(state.pid)}")
    if holders.free:
        return fail(
            f"{label}: nothing listens although portway reach (pid {state.pid}) runs",
            f"restart it: portway reach {state.name}",
        )
    return _conflict(label, holders.pids, f"use another port: portway reach {state.name} --port N")


def _conflict(label: str, pids: tuple[int, ...], instead: str) -> Finding:
    who = ", ".join(describe_process(pid) for pid in pids) or "another user's process"
    return fail(f"{label}: port held by {who}", f"stop it, or {instead}")


def _connection_ports(doc: Doctor) -> list[Finding]:
    """This agent's connection rows (`POST /v1/tunnels/{id}/connect`), held by `portway up`."""
    assert doc.agent is not None
    findings = []
    with doc.client() as client:
        for tunnel in client.paginate("/v1/tunnels"):
            for row in client.paginate(f"/v1/tunnels/{tunnel['id']}/connections"):
                if row["agentId"] == doc.agent["id"]:
                    findings.append(_row_port(doc, tunnel, row))
    return findings


def _row_port(doc: Doctor, tunnel: dict[str, Any], row: dict[str, Any]) -> Finding:
    label = f"{tunnel['name']} on localhost:{row['localPort']}"
    holders = holders_of(row["localPort"], udp=row["protocol"] == "udp")
    ours = [pid for pid in holders.pids if is_portway(pid)]
    if row["status"] == "bound" and ours and not holders.hidden:
        return ok(f"{label}: held by {describe_process(ours[0])}")
    others = tuple(pid for pid in holders.pids if pid not in ours)
    if others or (holders.hidden and not ours):
        move = (
            f"move the connection: DELETE /v1/tunnels/{tunnel['name']}/connections/{row['id']}, "
            "then connect with another localPort"
        )
        return _conflict(label, others, move)
    if not doc.agent or not doc.agent["online"]:
        return warn(f"{label}: not held, the agent is offline", "start it: portway up")
    reason = f": {row['statusReason']}" if row.get("statusReason") else ""
    return warn(f"{label}: connection is {row['status']}{reason}", "see portway up's output")


def run_checks(doc: Doctor) -> list[Finding]:
    """Run every registered check in order; a crashing check is reported, not fatal."""
    findings: list[Finding] = []
    for name, fn in CHECKS:
        try:
            result = fn(doc)
        except Exception as exc:  # one broken check must not hide the others
            result = fail(f"check failed: {exc!r}", "report this as a bug")
        for finding in result if isinstance(result, list) else [result]:
            findings.append(replace(finding, check=finding.check or name))
    return findings


def _text(findings: list[Finding]) -> str:
    """The findings for people: one line each, with the hint under a warning or a failure."""
    lines = []
    for f in findings:
        lines.append(f"{MARKS[f.status]}  {f.check:<9}  {f.message}")
        if f.hint and f.status in ("warn", "fail"):
            lines.append(f"{'':17}→ {f.hint}")
    return "\n".join(lines)


@click.command()
@api_options
def doctor(api: ApiOptions) -> None:
    """Check the profile, the hub, its CA, clocks, the agent and local ports; say what to fix."""
    profile, reaches = load_profile(api.profile_name), live_reaches(api.profile_name)
    findings = run_checks(Doctor(api=api, profile=profile, reaches=reaches))
    api.output.result([asdict(f) for f in findings], lambda: _text(findings))
    if any(f.status == "fail" for f in findings):
        click.get_current_context().exit(1)
