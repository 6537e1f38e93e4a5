"""Which URLs a task may make a worker fetch: the SSRF policy, shared by dispatcher and agent.

Contract: :meth:`UrlPolicy.check_uri` raises :class:`UrlDenied` (message names the URI and the
rule) for a URI whose scheme is not allowed or whose host is, *as written*, an address the policy
denies; numeric tricks are normalised the way ``inet_aton`` reads them (``2130706433``,
``0x7f.1``, ``0177.0.0.1``, ``127.1``) and IPv6 forms that embed an IPv4 address
(``::ffff:169.254.169.254``, NAT64, 6to4) are checked as that IPv4 address. The dispatcher calls
it at submit, without DNS. :meth:`UrlPolicy.check_resolved` does the same and then resolves a
host name (``socket.getaddrinfo``) and checks every address it resolves to; the agent calls it
right before adding a download to aria2. Neither can see redirects, BitTorrent peers or a DNS
answer that changes between the check and aria2's own lookup (docs/security.md).

This module never imports Django: the agent uses it as is.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list[tuple[Any, ...]]]

DEFAULT_SCHEMES = ("http", "https", "ftp", "sftp", "magnet")
# Link-local (cloud metadata lives there: 169.254.169.254, AWS's fd00:ec2::254).
DEFAULT_DENY_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
LOOPBACK_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128")
)
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "198.18.0.0/15",
        "fc00::/7",
    )
)
# Never a download source: multicast, reserved, broadcast.
NEVER_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("224.0.0.0/4", "240.0.0.0/4", "ff00::/8"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "sftp": 22}
# Names that resolve to loopback without asking DNS (RFC 6761).
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# The agent reports a URL refused by the policy with this code (outside aria2's 0-32):
# the dispatcher fails the task at once, without retries.
URL_DENIED_ERROR_CODE = 1001


def _without_userinfo(uri: str) -> str:
    """``uri`` without ``user:password@``: refusals are logged and shown to people."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority, slash, tail = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{tail}"


class UrlDenied(ValueError):
    """The URI is not allowed by the URL policy; ``reason`` says which rule refused it."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"{_without_userinfo(uri)[:200]!r} denied by the URL policy: {reason}")
        self.uri = uri
        self.reason = reason


class PolicyError(ValueError):
    """A URL policy setting is invalid; the message names the key."""


def parse_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``inet_aton`` would read from ``host``, or None if it is not numeric.

    One to four dot-separated parts, each decimal, octal (leading ``0``) or hex (``0x``); the last
    part fills the remaining bytes (``127.1`` is 127.0.0.1, ``2130706433`` is 127.0.0.1).
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if not part:
            return None
        try:
            if part[:2].lower() == "0x":
                value = int(part[2:] or "0", 16)
            elif len(part) > 1 and part[0] == "0":
                value = int(part[1:], 8)
            else:
                if not part.isdigit() or not part.isascii():
                    return None
                value = int(part, 10)
        except ValueError:
            return None
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number | last)


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, compatible), or itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def host_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally (after normalisation), None for a host name."""
    text = unicodedata.normalize("NFKC", unquote(host)).strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0] if ":" in text else text
    try:
        return embedded_ipv4(ipaddress.ip_address(text))
    except ValueError:
        pass
    return parse_inet_aton(text[:-1] if text.endswith(".") else text)


def _networks(values: Iterable[Any], key: str) -> tuple[IPNetwork, ...]:
    networks = []
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise PolicyError(f"{key}[{index}]: expected a network like '169.254.0.0/16'")
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise PolicyError(f"{key}[{index}]: {exc}") from None
    return tuple(networks)


@dataclass(frozen=True)
class UrlPolicy:
    """Allowed schemes, denied networks, and whether loopback / private ranges may be fetched.

    ``deny_ports`` are loopback ports never fetched (the agent adds its aria2 RPC port).
    """

    allowed_schemes: tuple[str, ...] = DEFAULT_SCHEMES
    deny_networks: tuple[IPNetwork, ...] = field(
        default_factory=lambda: _networks(DEFAULT_DENY_NETWORKS, "deny_networks")
    )
    allow_private: bool = True
    allow_loopback: bool = True
    deny_ports: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, key: str = "url_policy") -> UrlPolicy:
        """Build from JSON (the dispatcher's config or the register answer); raises PolicyError."""
        known = {"allowed_schemes", "deny_networks", "allow_private", "allow_loopback"}
        unknown = sorted(set(raw) - known - {"deny_ports"})
        if unknown:
            raise PolicyError(f"{key}.{unknown[0]}: unknown key (allowed: {sorted(known)})")
        default = cls()
        schemes = raw.get("allowed_schemes", list(default.allowed_schemes))
        if not isinstance(schemes, list) or not all(
            isinstance(s, str) and s.isalpha() for s in schemes
        ):
            raise PolicyError(f"{key}.allowed_schemes: expected a list of scheme names")
        deny = raw.get("deny_networks", list(DEFAULT_DENY_NETWORKS))
        if not isinstance(deny, list):
            raise PolicyError(f"{key}.deny_networks: expected a list of networks")
        flags = {}
        for name in ("allow_private", "allow_loopback"):
            value = raw.get(name, getattr(default, name))
            if not isinstance(value, bool):
                raise PolicyError(f"{key}.{name}: expected true or false")
            flags[name] = value
        ports = raw.get("deny_ports", [])
        if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports
        ):
            raise PolicyError(f"{key}.deny_ports: expected a list of port numbers")
        return cls(
            allowed_schemes=tuple(s.lower() for s in schemes),
            deny_networks=_networks(deny, f"{key}.deny_networks"),
            deny_ports=tuple(ports),
            **flags,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :meth:`from_dict` reads (sent to agents at registration)."""
        return {
            "allowed_schemes": list(self.allowed_schemes),
            "deny_networks": [str(n) for n in self.deny_networks],
            "allow_private": self.allow_private,
            "allow_loopback": self.allow_loopback,
        }

    def with_denied_port(self, port: int) -> UrlPolicy:
        """This policy, also refusing ``port`` on loopback (the agent's own aria2 RPC)."""
        return replace(self, deny_ports=(*self.deny_ports, port))

    def address_refusal(self, address: IPAddress, port: int | None = None) -> str | None:
        """Why ``address`` (and ``port``) may not be fetched, or None when it may."""
        address = embedded_ipv4(address)
        for network in self.deny_networks:
            if address.version == network.version and address in network:
                return f"{address} is in the denied network {network}"
        if any(address.version == n.version and address in n for n in NEVER_NETWORKS):
            return f"{address} is not a unicast address"
        loopback = any(address.version == n.version and address in n for n in LOOPBACK_NETWORKS)
        if loopback and port is not None and port in self.deny_ports:
            return f"port {port} on {address} is the worker's aria2 RPC"
        if loopback and not self.allow_loopback:
            return f"{address} is a loopback address (url_policy.allow_loopback is off)"
        private = any(address.version == n.version and address in n for n in PRIVATE_NETWORKS)
        if private and not self.allow_private:
            return f"{address} is a private address (url_policy.allow_private is off)"
        return None

    def _static(self, uri: str) -> tuple[str, int | None] | None:
        """Check scheme and literal host; return (host name, port) still to resolve, or None."""
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            raise UrlDenied(uri, f"not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in self.allowed_schemes:
            allowed = ", ".join(self.allowed_schemes)
            raise UrlDenied(uri, f"scheme '{scheme or '(none)'}' is not allowed ({allowed})")
        if scheme == "magnet":
            for name, tracker in parse_qsl(parts.query):
                if name == "tr" and tracker:
                    self.check_tracker(tracker)
            return None
        host = parts.hostname or ""
        if not host:
            raise UrlDenied(uri, "has no host")
        port = port if port is not None else DEFAULT_PORTS.get(scheme)
        address = host_address(host)
        if address is None:
            name = unicodedata.normalize("NFKC", unquote(host)).lower().rstrip(".")
            if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
                address = ipaddress.IPv4Address("127.0.0.1")
            else:
                return name, port
        refusal = self.address_refusal(address, port)
        if refusal:
            raise UrlDenied(uri, refusal)
        return None

    def check_tracker(self, tracker: str) -> None:
        """A BitTorrent tracker (magnet ``tr=``, ``bt-tracker``): http(s)/udp, and not a denied
        literal address; raises :class:`UrlDenied`."""
        try:
            parts = urlsplit(tracker)
            hostname = parts.hostname or ""
        except ValueError as exc:
            raise UrlDenied(tracker, f"not a valid tracker URL ({exc})") from None
        if parts.scheme.lower() not in {"http", "https", "udp"}:
            raise UrlDenied(tracker, "trackers must be http, https or udp")
        address = host_address(hostname)
        refusal = self.address_refusal(address) if address is not None else None
        if refusal:
            raise UrlDenied(tracker, f"tracker {refusal}")

    def check_uri(self, uri: str) -> None:
        """Refuse a URI by scheme or literal address (no DNS); raises :class:`UrlDenied`."""
        self._static(uri)

    def check_resolved(self, uri: str, *, resolver: Resolver | None = None) -> None:
        """:meth:`check_uri`, then resolve the host and refuse if any address is denied.

        A name that does not resolve passes: aria2 will fail it with its own DNS error.
        """
        pending = self._static(uri)
        if pending is None:
            return
        name, port = pending
        lookup = resolver or socket.getaddrinfo
        try:
            answers = lookup(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        for answer in answers:
            try:
                address = ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0])
            except ValueError:
                continue
            refusal = self.address_refusal(address, port)
            if refusal:
                raise UrlDenied(uri, f"{name} resolves to {refusal}")
