"""`portway env NAME…`: `NAME_HOST`, `NAME_PORT` and `NAME_URL` for tunnels reached here.

A tunnel counts as reached on this machine when a running `portway reach` recorded it (see
`cli/reaching.py`) or when the hub has a `bound` connection of this profile's agent for it
(`POST /v1/tunnels/{id}/connect`, held by `portway up`). Local state is read first, so reaches
work without asking the hub. Every name is resolved before anything is printed or written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from portway.cli.common import ApiOptions, api_options
from portway.cli.profile import load_profile
from portway.cli.reaching import ReachState, live_reaches
from portway.client import PortwayClient
from portway.errors import ApiError, ClientError, HubUnreachable

_SAFE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+,=\[\]-]*")
_KEY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


NO_SUCH_TUNNEL = "no such tunnel"


class NotReached(ClientError):
    """One or more names are not reached on this machine; the message says how to fix it."""

    code = "not_reached"


def prefix(name: str) -> str:
    """`prod-db` -> `PROD_DB`: upper case, anything but letters and digits becomes `_`."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def variables(name: str, host: str, port: int, url: str) -> dict[str, str]:
    key = prefix(name)
    return {f"{key}_HOST": host, f"{key}_PORT": str(port), f"{key}_URL": url}


def quote(value: str) -> str:
    """A dotenv value: bare when plain, else double-quoted with `\\`, `"`, `$`, `` ` `` escaped."""
    if _SAFE_VALUE.fullmatch(value):
        return value
    escaped = re.sub(r'([\\"$`])', r"\\\1", value)
    return f'"{escaped}"'


def update_dotenv(text: str, values: dict[str, str]) -> str:
    """`text` with each key of `values` set: replaced where it was (first occurrence; later
    duplicates dropped), appended otherwise. Comments and other lines are kept as they are."""
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        match = _KEY.match(line)
        key = match.group(1) if match else None
        if key in values:
            if key not in done:
                out.append(f"{key}={quote(values[key])}")
                done.add(key)
            continue
        out.append(line)
    out += [f"{key}={quote(value)}" for key, value in values.items() if key not in done]
    return "\n".join(out) + "\n"


def write_dotenv(path: Path, values: dict[str, str]) -> None:
    """Update `path` atomically, keeping its mode (new files are created 0600)."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        text, mode = "", 0o600
    tmp = path.with_name(f".{path.name}.portway-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(update_dotenv(text, values))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _from_reach(name: str, reaches: list[ReachState]) -> dict[str, str] | None:
    for state in reaches:  # newest first
        if name in (state.name, state.tunnel_id):
            return variables(
                state.name, state.local_host, state.local_port, state.connection_string
            )
    return None


def _from_hub(client: PortwayClient, agent_id: str, name: str) -> dict[str, str] | str:
    """The variables of this agent's bound connection, or why there is none (a message)."""
    tunnel: dict[str, Any] = client.get(f"/v1/tunnels/{name}")
    rows = [
        row
        for row in client.paginate(f"/v1/tunnels/{tunnel['id']}/connections")
        if row["agentId"] == agent_id
    ]
    for row in rows:
        if row["status"] == "bound":
            return variables(
                tunnel["name"], row["localHost"], row["localPort"], row["connectionString"]
            )
    if rows:
        row = rows[0]
        why = f": {row['statusReason']}" if row.get("statusReason") else ""
        return f"its connection on local port {row['localPort']} is {row['status']}{why}"
    return ""


def _ask_hub(client: PortwayClient, agent_id: str, name: str) -> dict[str, str] | str:
    try:
        return _from_hub(client, agent_id, name)
    except ApiError as exc:
        if exc.code != "tunnel_not_found":
            raise
        return NO_SUCH_TUNNEL


def resolve(names: tuple[str, ...], api: ApiOptions) -> dict[str, str]:
    """Variables for every name, or NotReached listing each missing name and what to do.

    Called by the `env` command; asks the hub only for names no local reach covers.
    """
    reaches = live_reaches(api.profile_name)
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in names:
        if (local := _from_reach(name, reaches)) is not None:
            found |= local
        else:
            missing[name] = ""
    agent_id = load_profile(api.profile_name).agent_id
    if missing and agent_id and api.hub and api.api_key:
        try:
            with api.client() as client:
                for name in list(missing):
                    answer = _ask_hub(client, agent_id, name)
                    if isinstance(answer, dict):
                        found |= answer
                        del missing[name]
                    else:
                        missing[name] = answer
        except HubUnreachable as exc:
            missing = dict.fromkeys(missing, f"and the hub could not be asked ({exc})")
    if missing:
        lines = []
        for name, why in missing.items():
            if why == NO_SUCH_TUNNEL:
                lines.append(f"{name}: the hub has no such tunnel; see: portway tunnels ls")
                continue
            detail = f" ({why})" if why else ""
            lines.append(f"{name} is not being reached here{detail}; run: portway reach {name}")
        raise NotReached("\n".join(lines))
    return found


@click.command("env")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write or update this dotenv file instead of printing.",
)
@api_options
def env(names: tuple[str, ...], output: Path | None, api: ApiOptions) -> None:
    """Print NAME_HOST, NAME_PORT and NAME_URL for tunnels reached on this machine.

    With --output FILE the variables are set in FILE (other lines are kept); nothing is
    written unless every NAME is being reached.
    """
    values = resolve(names, api)
    if output is not None:
        write_dotenv(output, values)
        api.output.result(
            {"output": str(output), "variables": values},
            f"Wrote {len(values)} variables to {output}.",
            err=True,
        )
        return
    api.output.result(values, "\n".join(f"{key}={quote(value)}" for key, value in values.items()))
