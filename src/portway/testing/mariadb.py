"""A throwaway MariaDB server: mariadb-install-db into a temp dir, mariadbd on a free port, delete.

Used by the probe tests (tests/probe) to detect a real MariaDB and to check that the `mariadb`
client reaches it. Debian's `mariadb-server` provides the programs; `find_mariadb_bin` returns None
when it is missing so the caller can skip (or fail under CI=true, see `programs.unavailable`).
The root account gets password-less "normal" authentication, so
`mariadb -h 127.0.0.1 -P PORT -u root` works over TCP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from portway.testing.ports import free_port
from portway.testing.waiting import wait_until


@dataclass(frozen=True)
class MariaDbBinaries:
    server: Path  # mariadbd
    install_db: Path  # mariadb-install-db


def find_mariadb_bin() -> MariaDbBinaries | None:
    """mariadbd and mariadb-install-db, or None when mariadb-server is not installed.

    mariadbd lives in /usr/sbin, which is not on every user's PATH.
    """
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin"
    server = shutil.which("mariadbd", path=path)
    install_db = shutil.which("mariadb-install-db", path=path)
    if server is None or install_db is None:
        return None
    return MariaDbBinaries(Path(server), Path(install_db))


@dataclass(frozen=True)
class MariaDbServer:
    host: str
    port: int
    user: str
    socket: Path


def _greets(port: int) -> bool:
    """Whether the server is up: it sends its handshake packet as soon as we connect."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return len(sock.recv(4)) == 4
    except OSError:
        return False


@contextlib.contextmanager
def throwaway_mariadb(binaries: MariaDbBinaries) -> Iterator[MariaDbServer]:
    """Start a fresh MariaDB on 127.0.0.1 (root without password) and remove it afterwards."""
    base = Path(tempfile.mkdtemp(prefix="portway-mariadb-"))
    data, sock, log = base / "data", base / "mariadbd.sock", base / "error.log"
    # mariadbd refuses to run as root unless told to, and we may well be root in CI containers.
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [str(binaries.install_db), "--no-defaults", f"--datadir={data}", *as_user,
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        proc = subprocess.Popen(
            [str(binaries.server), "--no-defaults", f"--datadir={data}", f"--socket={sock}",
             f"--port={port}", "--bind-address=127.0.0.1", *as_user, "--skip-name-resolve",
             "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--innodb-flush-method=nosync",
             f"--pid-file={base / 'mariadbd.pid'}", f"--log-error={log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(
            lambda: proc is not None and (proc.poll() is not None or _greets(port)),
            timeout=60, what="mariadbd",
        )  # fmt: skip
        if proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited: {log.read_text() if log.exists() else ''}")
        yield MariaDbServer("127.0.0.1", port, "root", sock)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"mariadb-install-db failed: {exc.stderr!r}") from exc
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)
