"""First start: create the admin workspace and its key, and leave the key for the operator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from portway.domain.clock import Clock
from portway.store import Database, api_keys, workspaces

ADMIN_WORKSPACE = "default"
ADMIN_KEY_NAME = "admin"


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """`admin_key` is the plaintext key when this start created it, else None."""

    admin_key: str | None
    key_file: Path


def write_secret_file(path: Path, content: str) -> None:
    """Write `content` to `path` readable by the owner only (0600), replacing any old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def ensure_admin(db: Database, key_file: Path, clock: Clock) -> Bootstrap:
    """Create the admin workspace and key unless the store already has them."""
    now = clock.now()
    try:
        async with db.session() as session:
            if await workspaces.admin(session) is not None:
                return Bootstrap(admin_key=None, key_file=key_file)
            workspace = await workspaces.create(session, ADMIN_WORKSPACE, now=now, is_admin=True)
            _key, plaintext = await api_keys.create(session, workspace.id, ADMIN_KEY_NAME, now=now)
    except IntegrityError:
        # Another hub sharing this PostgreSQL store bootstrapped it at the same moment.
        return Bootstrap(admin_key=None, key_file=key_file)
    write_secret_file(key_file, plaintext)
    return Bootstrap(admin_key=plaintext, key_file=key_file)
