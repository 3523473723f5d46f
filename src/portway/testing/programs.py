"""Finding external programs tests need: absent means skip locally, but fail under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str, *, package: str | None = None) -> str:
    """The path of `name`, or skip (fail in CI) saying which Debian package provides it."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (apt-get install {package or name})"
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def unavailable(reason: str) -> None:
    """Skip the current test for `reason`, or fail it when running in CI."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)
