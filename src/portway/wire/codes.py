"""Reason codes shared by every codec.

:class:`Reason` says why one proxied connection ended or could not start. It travels as a one-byte
code in stream and datagram resets and as its lower-case label in JSON frames (``assign_error``,
``reach_reject``), so the hub can put the same words into a tunnel's ``statusReason``.

:class:`SessionCode` says why a control session or data channel was refused or ended (``refused``
and ``goodbye`` frames).

Both are open sets: a newer peer may send a value this version does not know. Decoders map such
values to ``UNKNOWN`` instead of failing, so adding a reason never breaks older agents.
"""

from __future__ import annotations

import enum


class Reason(enum.IntEnum):
    """Why a proxied connection was reset or refused (one byte on the wire)."""

    UNKNOWN = 0
    RESET = 1  # the far end reset or dropped its connection
    TARGET_REFUSED = 2  # the exposing agent's dial got "connection refused"
    TARGET_UNREACHABLE = 3  # no route, host down, or the name did not resolve
    TARGET_TIMEOUT = 4  # the dial did not complete in time
    DENIED = 5  # the agent's target policy forbids this address
    PAUSED = 6  # the tunnel was paused
    CLOSED = 7  # the tunnel or connection was deleted, or the hub is stopping
    GONE = 8  # the reaching agent's local client left before assignment
    PROTOCOL_ERROR = 9  # a peer broke the stream framing
    INTERNAL_ERROR = 10
    IDLE_TIMEOUT = 11  # a UDP session saw no datagram for its idle period
    UNAVAILABLE = 12  # no live agent session serves the tunnel
    LIMIT = 13  # a stream or rate limit refused it (version 2 sessions)

    @property
    def label(self) -> str:
        """The JSON spelling, e.g. ``"target_refused"``."""
        return self.name.lower()

    @classmethod
    def from_code(cls, code: int) -> Reason:
        """Decode a wire byte; unknown codes become :attr:`UNKNOWN`."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN

    @classmethod
    def from_label(cls, label: str) -> Reason:
        """Decode a JSON label; unknown labels become :attr:`UNKNOWN`."""
        member = cls.__members__.get(label.upper()) if label.islower() else None
        return member if member is not None else cls.UNKNOWN


class SessionCode(enum.StrEnum):
    """Why the hub refused a hello, or why either side said goodbye."""

    UNKNOWN = "unknown"
    BAD_VERSION = "bad_version"  # the preface names a version the hub does not speak
    BAD_HELLO = "bad_hello"  # the first frame was not a hello, or was malformed
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105 (a reason code, not a secret)
    REVOKED = "revoked"  # the agent (or its token) was revoked
    ROTATED = "rotated"  # the token was replaced by a newer one
    UNKNOWN_SESSION = "unknown_session"  # a data channel names a session that is not live
    BAD_SECRET = "bad_secret"  # noqa: S105 (a channel secret did not match its session)
    SHUTTING_DOWN = "shutting_down"  # the hub is stopping; reconnect later
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # the peer stopped answering pings
    PROTOCOL_ERROR = "protocol_error"  # the peer broke the framing or message rules
    LIMIT = "limit"  # too many sessions or channels for this agent
    CLIENT_EXIT = "client_exit"  # the agent process is stopping

    @classmethod
    def parse(cls, value: str) -> SessionCode:
        """Decode a JSON value; unknown values become :attr:`UNKNOWN`."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN
