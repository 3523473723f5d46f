"""Which targets an agent agrees to dial: ``--allow`` / ``--deny CIDR[:PORTS]`` rules.

The exposing agent checks every resolved target address before dialling, so a workspace key
alone cannot turn an agent into a way into places its operator did not intend. DialDecision order:

1. the most specific user rule matching the address and port wins (a tie goes to deny);
2. otherwise link-local and cloud metadata addresses are denied;
3. otherwise, if any ``--allow`` rule exists, the target is denied (allowlist mode);
4. otherwise it is allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from portway.errors import InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services answer credentials to anyone who can reach them.
BUILTIN_DENIED: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "link-local address"),
    (ipaddress.ip_network("fe80::/10"), "link-local address"),
    (ipaddress.ip_network("100.100.100.200/32"), "cloud metadata address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "cloud metadata address"),
)


class PolicyError(InvalidInput):
    """A rule that cannot be parsed; the message quotes it.

    Raised by `parse_rule` and `TargetPolicy.from_flags`; `portway up --allow/--deny` turns it
    into a `ConfigError`.
    """

    code = "invalid_policy"


@dataclass(frozen=True, slots=True)
class Rule:
    allow: bool
    network: IPNetwork
    ports: tuple[tuple[int, int], ...]  # inclusive ranges; empty = every port

    def matches(self, address: IPAddress, port: int) -> bool:
        if address.version != self.network.version or address not in self.network:
            return False
        return not self.ports or any(low <= port <= high for low, high in self.ports)

    def __str__(self) -> str:
        ports = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.ports)
        return f"{'allow' if self.allow else 'deny'} {self.network}{':' + ports if ports else ''}"


def _ports(text: str, rule: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in text.split(","):
        low_text, _, high_text = part.partition("-")
        try:
            low, high = int(low_text), int(high_text or low_text)
        except ValueError:
            raise PolicyError(f"{rule!r}: ports must be numbers like 5432 or 8000-8999") from None
        if not 1 <= low <= high <= 65535:
            raise PolicyError(f"{rule!r}: port range {part} is outside 1-65535")
        ranges.append((low, high))
    return tuple(ranges)


def parse_rule(text: str, *, allow: bool) -> Rule:
    """Parse ``CIDR``, ``CIDR:PORTS`` or ``[IPv6-CIDR]:PORTS`` (a bare address is a /32 or /128)."""
    spec = text.strip()
    ports = ""
    if spec.startswith("["):
        network_text, _, rest = spec[1:].partition("]")
        ports = rest.removeprefix(":")
    elif spec.count(":") == 1:
        network_text, _, ports = spec.partition(":")
    else:
        network_text = spec
    try:
        network = ipaddress.ip_network(network_text, strict=False)
    except ValueError:
        raise PolicyError(f"{text!r} is not an IP network like 10.0.0.0/8 or [fd00::/8]") from None
    return Rule(allow=allow, network=network, ports=_ports(ports, text) if ports else ())


@dataclass(frozen=True, slots=True)
class DialDecision:
    allowed: bool
    reason: str


MAX_REMEMBERED = 4096  # distinct (address, port) answers kept


class TargetPolicy:
    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules = tuple(rules)
        self.allowlist = any(rule.allow for rule in self.rules)
        self._decided: dict[tuple[str, int], DialDecision] = {}

    @classmethod
    def from_flags(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> TargetPolicy:
        rules = [parse_rule(r, allow=True) for r in allow]
        rules += [parse_rule(r, allow=False) for r in deny]
        return cls(rules)

    def check(self, address: str | IPAddress, port: int) -> DialDecision:
        """May this agent dial `address:port`? Called with every resolved address, for every
        connection: answers for textual addresses are remembered (the rules never change)."""
        if isinstance(address, str):
            key = (address, port)
            decided = self._decided.get(key)
            if decided is None:
                if len(self._decided) >= MAX_REMEMBERED:
                    self._decided.clear()
                decided = self._decided[key] = self._check(ipaddress.ip_address(address), port)
            return decided
        return self._check(address, port)

    def _check(self, ip: IPAddress, port: int) -> DialDecision:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        matching = [rule for rule in self.rules if rule.matches(ip, port)]
        if matching:
            best = max(matching, key=lambda r: (r.network.prefixlen, not r.allow))
            verdict = "allowed" if best.allow else "denied"
            return DialDecision(best.allow, f"{ip}:{port} {verdict} by rule '{best}'")
        for network, what in BUILTIN_DENIED:
            if ip.version == network.version and ip in network:
                return DialDecision(
                    False, f"{ip} is a {what}; start the agent with --allow {network} to permit it"
                )
        if self.allowlist:
            return DialDecision(False, f"{ip}:{port} matches no --allow rule of this agent")
        return DialDecision(True, "allowed")
