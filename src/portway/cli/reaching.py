"""What this machine is reaching: one state file per running `portway reach`, and who holds a port.

`portway reach` calls :func:`record` once its listener is bound and :func:`forget` on exit;
`portway env` and `portway doctor` call :func:`live_reaches` to find them. Files live in
``<config dir>/reaching/<profile>/<tunnel name>.<pid>.json`` (one per process, so two terminals
reaching the same tunnel on different ports do not overwrite each other) and hold::

    {"tunnelId": "…", "name": "prod-db", "protocol": "tcp", "localHost": "localhost",
     "localPort": 5432, "bindAddresses": ["127.0.0.1", "::1"],
     "connectionString": "postgresql://localhost:5432/postgres", "pid": 4242,
     "processStart": 123456, "startedAt": "2026-11-28T23:59:00+00:00"}

A file whose process is gone (killed with SIGKILL, machine rebooted) is deleted when read.
`processStart` (Linux clock ticks since boot) tells a reused pid from the original process.

:func:`port_holders` tells `portway doctor` which processes listen on a local port, from
``/proc/net/{tcp,tcp6,udp,udp6}`` and ``/proc/<pid>/fd``; without ``/proc`` it falls back to a
bind attempt, which says only "free" or "in use".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from portway.agent.reach import port_is_free
from portway.cli.profile import config_dir

WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - names of wildcard binds, not a bind
TCP_LISTEN = "0A"
PROC = Path("/proc")


@dataclass(frozen=True)
class ReachState:
    """One running `portway reach`: written by `cli/reach.py`, read by `env` and `doctor`."""

    tunnel_id: str
    name: str
    protocol: str
    local_host: str
    local_port: int
    bind_addresses: list[str]
    connection_string: str
    pid: int = field(default_factory=os.getpid)
    process_start: int | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        return {_camel(k): v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReachState:
        return cls(**{_snake(k): v for k, v in data.items() if _snake(k) in cls.__annotations__})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def reach_dir(profile_name: str) -> Path:
    return config_dir() / "reaching" / profile_name


def local_host(addresses: tuple[str, ...] | list[str]) -> str:
    """The host a client on this machine uses: `localhost` when a loopback or wildcard address
    is bound, else the first address (bracketed when IPv6)."""
    for address in addresses:
        if address in WILDCARDS or address == "localhost" or address.startswith("127."):
            return "localhost"
        if address == "::1":
            return "localhost"
    first = addresses[0]
    return f"[{first}]" if ":" in first else first


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, Linux); None where /proc cannot tell."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive, and certainly not our reach if starts differ
    return started is None or process_start(pid) in (started, None)


def record(profile_name: str, state: ReachState) -> Path:
    """Write `state` (mode 0600, atomically); returns the path for :func:`forget`."""
    directory = reach_dir(profile_name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{state.name}.{state.pid}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state.to_json(), fh, indent=2)
    os.replace(tmp, path)
    return path


def forget(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def live_reaches(profile_name: str) -> list[ReachState]:
    """Reaches of running processes, newest first; files of dead processes are deleted."""
    found: list[ReachState] = []
    for path in sorted(reach_dir(profile_name).glob("*.json")):
        try:
            state = ReachState.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            forget(path)  # half-written or foreign: nothing can use it
            continue
        if _alive(state.pid, state.process_start):
            found.append(state)
        else:
            forget(path)
    return sorted(found, key=lambda s: s.started_at, reverse=True)


@dataclass(frozen=True)
class PortHolders:
    """Who listens on a local port. `pids` are the processes we can see; `hidden` is True when
    some socket on it belongs to a process we cannot inspect (another user's), or when only a
    bind attempt was possible and it failed."""

    pids: tuple[int, ...] = ()
    hidden: bool = False

    @property
    def free(self) -> bool:
        return not self.pids and not self.hidden


def _socket_inodes(port: int, udp: bool) -> set[int] | None:
    """Inodes of sockets bound to `port` (TCP: listening only); None without /proc/net."""
    inodes: set[int] = set()
    tables = ("udp", "udp6") if udp else ("tcp", "tcp6")
    readable = False
    for table in tables:
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or int(cols[1].rsplit(":", 1)[1], 16) != port:
                continue
            if udp or cols[3] == TCP_LISTEN:
                inodes.add(int(cols[9]))
    return inodes if readable else None


def _owners(inodes: set[int]) -> dict[int, int]:
    """Map socket inodes to the pids holding them, among the processes we may inspect."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, int] = {}
    for proc in PROC.iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if (inode := wanted.get(os.readlink(fd))) is not None:
                        owners[inode] = int(proc.name)
        if len(owners) == len(wanted):
            break
    return owners


def port_holders(port: int, *, udp: bool = False) -> PortHolders:
    inodes = _socket_inodes(port, udp)
    if inodes is None:
        return PortHolders(hidden=not port_is_free(port, udp=udp))
    owners = _owners(inodes) if inodes else {}
    return PortHolders(tuple(sorted(set(owners.values()))), hidden=len(owners) < len(inodes))


def _portway_args(words: list[str]) -> list[str] | None:
    """The arguments after `portway` when `words` is a Portway command line, else None."""
    names = ("portway", "connect")
    if words and Path(words[0]).name in names:
        return words[1:]
    if len(words) > 1 and Path(words[0]).name.startswith("python"):
        if Path(words[1]).name in names:
            return words[2:]
        if words[1:3] == ["-m", "portway"]:
            return words[3:]
    return None


def describe_process(pid: int) -> str:
    """`portway reach (pid 42)`, `nginx (pid 7)`: a holder's name as people know it."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        words = [w.decode(errors="replace") for w in argv if w]
    except OSError:
        words = []
    if (args := _portway_args(words)) is not None:
        return f"portway {args[0]} (pid {pid})" if args else f"portway (pid {pid})"
    try:
        name = (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        name = "a process"
    return f"{name} (pid {pid})"


def is_portway(pid: int) -> bool:
    return describe_process(pid).startswith("portway")
