"""Child processes the benchmark owns: each in its own process group, always cleaned up."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def raise_nofile(wanted: int = 1_048_576) -> int:
    """Raise RLIMIT_NOFILE for this process and every child it starts; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted)
    if os.geteuid() != 0:
        target = min(target, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
        return target
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Proc:
    """A program running in the background in its own session, output to a log file."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        with log.open("w") as out:
            self.popen = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole process group, then SIGKILL it if it lingers."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.05) -> T:
    """Poll `check` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


ESTABLISHED = 0x01  # the `st` column of /proc/net/tcp for an established connection


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/<pid>/net/tcp (or tcp6): ports, state and the socket's inode."""

    local_port: int
    remote_port: int
    state: int
    inode: int


def parse_proc_net_tcp(text: str) -> list[TcpSocket]:
    """The rows of a /proc/<pid>/net/tcp or tcp6 table (the header line skipped): every TCP
    socket of the process's network namespace, not only the process's own."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        sockets.append(TcpSocket(
            local_port=int(local.rsplit(":", 1)[1], 16),
            remote_port=int(remote.rsplit(":", 1)[1], 16),
            state=int(state, 16), inode=int(inode),
        ))  # fmt: skip
    return sockets


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets `pid` holds open, from the ``socket:[N]`` links in
    /proc/<pid>/fd (a descriptor closed while reading is skipped)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target.endswith("]"):
                inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def count_established(sockets: Iterable[TcpSocket], inodes: set[int], remote_port: int) -> int:
    """How many of `sockets` are ESTABLISHED connections to `remote_port` whose inode is one
    of `inodes` (one process's sockets)."""
    return sum(1 for sock in sockets
               if sock.state == ESTABLISHED and sock.remote_port == remote_port
               and sock.inode in inodes)  # fmt: skip


def established_to(pid: int, port: int) -> int:
    """How many ESTABLISHED TCP connections `pid` holds to `port` (any address, IPv4 or 6)."""
    sockets: list[TcpSocket] = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            sockets += parse_proc_net_tcp(Path(f"/proc/{pid}/net/{table}").read_text())
    return count_established(sockets, socket_inodes(pid), port)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pids: Iterable[int], timeout: float, busy: float = 0.1, window: float = 0.5) -> None:
    """Wait until each of `pids` used under `busy` of a core over one `window` of seconds: a
    process still tearing down thousands of connections would slow the next scenario."""
    watched = list(pids)

    def quiet() -> bool:
        before = [cpu_seconds(pid) for pid in watched]
        time.sleep(window)
        used = [cpu_seconds(pid) - b for pid, b in zip(watched, before, strict=True)]
        return all(seconds < busy * window for seconds in used)

    wait_for(quiet, timeout=timeout, what="the processes to go quiet", step=0)
