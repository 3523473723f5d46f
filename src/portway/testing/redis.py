"""A throwaway redis-server on a free loopback port, optionally with a password.

Used by the probe tests; `redis-server` comes from Debian's `redis-server` package (the caller
checks for it with `programs.require_program`). Nothing is persisted: `--save ''`,
`--appendonly no`, and the working directory is a temp dir removed afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from portway.testing.ports import free_port
from portway.testing.waiting import wait_until


def _answers(port: int) -> bool:
    """Up means it answers PING, with PONG or with NOAUTH when a password is set."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@contextlib.contextmanager
def throwaway_redis(server: str, *, password: str | None = None) -> Iterator[int]:
    """Run `server` (the redis-server path) on 127.0.0.1; yields its port."""
    base = Path(tempfile.mkdtemp(prefix="portway-redis-"))
    port = free_port()
    auth = ["--requirepass", password] if password else []
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(base), *auth],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: proc.poll() is not None or _answers(port), timeout=10, what="redis")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)
