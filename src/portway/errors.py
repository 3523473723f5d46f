"""Errors Portway raises on purpose, for callers outside the hub's API.

    PortwayError
    ├── ConfigError          a flag, environment variable or config file value is wrong
    └── ClientError          the CLI or an agent could not get what it asked of the hub
        ├── HubUnreachable   no TCP connection, name resolution failure, timeout
        └── ApiError         the hub answered with an error document

Inside the hub, request handlers raise `portway.api.problems.Problem`; it travels to clients as
``{"error": {"code", "message", "details"}}`` and comes back to them as `ApiError`.
"""

from __future__ import annotations

from typing import Any


class PortwayError(Exception):
    """Base of every deliberate Portway error; its message is fit to show a user as is."""


class ConfigError(PortwayError):
    """A configuration value (flag, ``PORTWAY_*`` variable, TOML file) is invalid."""


class ClientError(PortwayError):
    """A request from the CLI or an agent to the hub failed."""


class HubUnreachable(ClientError):
    """The hub could not be reached at all."""


class ApiError(ClientError):
    """The hub answered with an error document."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status})"
