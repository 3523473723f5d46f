from __future__ import annotations

import pytest

from portway.domain.dial_policy import PolicyError, TargetPolicy, parse_rule


def test_default_allows_ordinary_targets() -> None:
    policy = TargetPolicy()
    assert policy.check("127.0.0.1", 5432).allowed
    assert policy.check("10.0.0.5", 6379).allowed
    assert policy.check("::1", 80).allowed


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "169.254.1.1", "fe80::1", "100.100.100.200", "fd00:ec2::254"]
)
def test_link_local_and_metadata_denied_by_default(address: str) -> None:
    decision = TargetPolicy().check(address, 80)
    assert not decision.allowed
    assert "--allow" in decision.reason


def test_explicit_allow_overrides_builtin_denial() -> None:
    policy = TargetPolicy.from_flags(allow=["169.254.169.254/32:80"], deny=[])
    assert policy.check("169.254.169.254", 80).allowed
    # Allowlist mode: everything else is now denied.
    assert not policy.check("10.0.0.1", 80).allowed
    assert not policy.check("169.254.169.254", 81).allowed


def test_most_specific_rule_wins() -> None:
    policy = TargetPolicy.from_flags(allow=["10.0.0.5/32"], deny=["10.0.0.0/8"])
    assert policy.check("10.0.0.5", 22).allowed
    assert not policy.check("10.0.0.6", 22).allowed


def test_ports_and_ranges() -> None:
    policy = TargetPolicy.from_flags(deny=["127.0.0.1:22,8000-8999"])
    assert not policy.check("127.0.0.1", 22).allowed
    assert not policy.check("127.0.0.1", 8500).allowed
    assert policy.check("127.0.0.1", 5432).allowed


def test_ipv6_rules_and_mapped_addresses() -> None:
    policy = TargetPolicy.from_flags(deny=["[::1/128]:5432", "127.0.0.0/8:6379"])
    assert not policy.check("::1", 5432).allowed
    assert policy.check("::1", 80).allowed
    assert not policy.check("::ffff:127.0.0.1", 6379).allowed


def test_tie_goes_to_deny() -> None:
    policy = TargetPolicy.from_flags(allow=["10.0.0.0/8"], deny=["10.0.0.0/8"])
    assert not policy.check("10.1.1.1", 1).allowed


@pytest.mark.parametrize(
    "bad", ["nonsense", "10.0.0.0/33", "10.0.0.0/8:0", "10.0.0.0/8:abc", "10.0.0.0/8:9-1"]
)
def test_bad_rules_are_rejected(bad: str) -> None:
    with pytest.raises(PolicyError):
        parse_rule(bad, allow=True)
