"""A throwaway PostgreSQL cluster: initdb into a temp dir, pg_ctl start on a free port, delete.

Used by the suite (and by CI) so the store is tested on PostgreSQL as well as SQLite. When run
as root, the cluster runs as an unprivileged user, as PostgreSQL insists.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from portway.testing.ports import free_port


def find_pg_bin() -> Path | None:
    """Directory holding initdb and pg_ctl, or None when PostgreSQL's server is not installed."""
    if initdb := shutil.which("initdb"):
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _run_as() -> str | None:
    """The user to run the server as when we are root (postgres if it exists, else nobody)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user exists for PostgreSQL")


@dataclass(frozen=True)
class PostgresCluster:
    host: str
    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"


@contextlib.contextmanager
def throwaway_cluster(bin_dir: Path) -> Iterator[PostgresCluster]:
    """Start a fresh cluster with trust auth on 127.0.0.1 and remove it afterwards."""
    base = Path(tempfile.mkdtemp(prefix="portway-pg-"))
    data = base / "data"
    user = _run_as()
    prefix = ["runuser", "-u", user, "--"] if user else []
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    port = free_port()
    log = base / "server.log"
    try:
        subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "portway",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
             "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r} {text}") from exc
    try:
        yield PostgresCluster("127.0.0.1", port, "portway", data)
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
