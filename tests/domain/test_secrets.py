from __future__ import annotations

import base64
import hashlib

from portway.domain import secrets


def test_issue_is_256_bits_with_prefix() -> None:
    issued = secrets.issue(secrets.API_KEY_PREFIX)
    assert issued.value.startswith("pw_")
    raw = base64.urlsafe_b64decode(issued.value[3:] + "=")
    assert len(raw) == 32
    assert issued.digest == hashlib.sha256(issued.value.encode()).hexdigest()


def test_values_are_unique() -> None:
    assert len({secrets.issue("pw_").value for _ in range(1000)}) == 1000


def test_matches_is_exact() -> None:
    issued = secrets.issue(secrets.AGENT_TOKEN_PREFIX)
    assert secrets.matches(issued.value, issued.digest)
    assert not secrets.matches(issued.value + "x", issued.digest)
    assert not secrets.matches(issued.value[:-1], issued.digest)


def test_visible_prefix_reveals_little() -> None:
    issued = secrets.issue(secrets.API_KEY_PREFIX)
    assert issued.visible_prefix == issued.value[:11]
    assert secrets.visible_prefix("pwa_abcdefghijkl") == "pwa_abcdefgh"
