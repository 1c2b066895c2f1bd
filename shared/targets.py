"""Which webhook targets may be called: the guard against server-side request forgery (SSRF).

Two checks use one policy. The API calls `check_target` when a subscription's URL is set, to
answer `422` early. The sender's pool (`services.sender.transport`) calls `checked_addresses`
on the addresses it is about to connect to, at every connect, so a DNS answer that changes
between the API's check and the connection (DNS rebinding) is refused too. Both raise
`RefusedAddress`, a `shared.errors.TargetRefused`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from urllib.parse import unquote

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from shared.errors import TargetRefused
from shared.settings import Settings

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class RefusedAddress(TargetRefused, OSError):
    """A target resolved to an address the policy refuses (an `OSError` so aiohttp wraps it)."""


class TargetUnresolved(TargetRefused):
    """The target's host name does not resolve (may be temporary; the API may still refuse)."""


@dataclass(frozen=True)
class TargetPolicy:
    """Which addresses may be connected to: public ones, plus the exceptions configured."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetPolicy:
        """The policy of `HOOKLINE_ALLOW_PRIVATE_TARGETS` and `HOOKLINE_ALLOWED_TARGET_NETWORKS`."""
        return cls(
            allow_private=settings.allow_private_targets,
            allowed_networks=tuple(settings.allowed_target_networks),
        )

    def allows_network(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)


def _table(entries: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ip_network(cidr), reason) for cidr, reason in entries)


# Order matters: the first matching range names the reason (a /32 before its /4).
_V4_REFUSED = _table(
    [
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this network (RFC 1122)"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
        ("192.0.2.0/24", "documentation (RFC 5737)"),
        ("198.51.100.0/24", "documentation (RFC 5737)"),
        ("203.0.113.0/24", "documentation (RFC 5737)"),
        ("192.88.99.0/24", "reserved (former 6to4 relay anycast)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    ]
)

_V6_REFUSED = _table(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved (deprecated IPv4-compatible)"),
        ("64:ff9b:1::/48", "private (local-use NAT64, RFC 8215)"),
        ("100::/64", "discard-only (RFC 6666)"),
        ("2001:db8::/32", "documentation (RFC 3849)"),
        ("3fff::/20", "documentation (RFC 9637)"),
        ("2001::/23", "IETF protocol assignments (RFC 6890)"),
        ("fc00::/7", "unique local (private, RFC 4193)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
)

_NAT64 = IPv6Network("64:ff9b::/96")


def _embedded_v4(ip: IPv6Address) -> tuple[IPv4Address, str] | None:
    """An IPv4 address carried inside `ip` that a packet to `ip` would reach, and how."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return None


def _table_reason(ip: IPAddress) -> str | None:
    table = _V4_REFUSED if ip.version == 4 else _V6_REFUSED
    for network, reason in table:
        if ip in network:
            return reason
    if not ip.is_global:
        # A range added to the IANA registries after this table was written.
        return "not globally routable"
    return None


def address_refusal(ip: IPAddress, policy: TargetPolicy) -> str | None:
    """Why `ip` may not be a webhook target under `policy`, or None when it may.

    An IPv6 address that embeds an IPv4 one (IPv4-mapped, 6to4, NAT64) is judged by the
    IPv4 address it reaches, e.g. "IPv4-mapped private (RFC 1918)".
    """
    if policy.allow_private:
        return None
    if isinstance(ip, IPv6Address):
        if ip.scope_id:
            ip = IPv6Address(ip.compressed.split("%", 1)[0])
        embedded = _embedded_v4(ip)
        if embedded is not None:
            v4, how = embedded
            if policy.allows_network(ip):
                return None
            inner = address_refusal(v4, policy)
            return None if inner is None else f"{how} {inner}"
    if policy.allows_network(ip):
        return None
    return _table_reason(ip)


def check_url_shape(url: str) -> None:
    """Raise `TargetRefused` unless `url` is an absolute http(s) URL with a host and no userinfo.

    The URL is parsed with yarl, the parser aiohttp uses to send, so both see the same host.
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise TargetRefused(f"the URL cannot be parsed: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with http:// or https://")
    if not parsed.raw_host:
        raise TargetRefused("the URL must name a host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise TargetRefused("the URL must not contain a user name or password")
    try:
        port = parsed.port
    except ValueError as exc:
        raise TargetRefused("the URL's port is not valid") from exc
    if port is None or not 0 < port < 65536:
        raise TargetRefused("the URL's port is not valid")


def checked_addresses(host: str, addresses: Iterable[str], policy: TargetPolicy) -> list[str]:
    """`addresses` unchanged, or `RefusedAddress` naming the first refused one.

    Both HTTP clients call it on every address they are about to connect to.
    """
    checked: list[str] = []
    for address in addresses:
        try:
            ip = ip_address(address)
        except ValueError as exc:
            raise RefusedAddress(f"{host} resolved to {address!r}, not an IP address") from exc
        reason = address_refusal(ip, policy)
        if reason is not None:
            where = "is" if host == address else f"resolves to {address}, which is"
            raise RefusedAddress(f"the target {host} {where} {reason}")
        checked.append(address)
    return checked


async def check_target(
    url: str, policy: TargetPolicy, resolver: AbstractResolver | None = None
) -> list[str]:
    """Check `url`'s shape and every address its host resolves to; return those addresses.

    Raises `TargetRefused` (`RefusedAddress` when an address is refused, `TargetUnresolved`
    when the host does not resolve). IP literals, also legacy forms like `2130706433`, are
    resolved as the operating system would and the result is checked.
    """
    check_url_shape(url)
    parsed = URL(url)
    host = str(parsed.raw_host)
    literal = _ip_literal(host)
    if literal is not None:
        return checked_addresses(host, [literal], policy)
    inner = resolver if resolver is not None else aiohttp.ThreadedResolver()
    try:
        results = await inner.resolve(host, parsed.port or 0, socket.AF_UNSPEC)
    except OSError as exc:
        raise TargetUnresolved(f"the target host {host} does not resolve") from exc
    finally:
        if resolver is None:
            await inner.close()
    if not results:
        raise TargetUnresolved(f"the target host {host} does not resolve")
    return checked_addresses(host, (r["host"] for r in results), policy)


def _ip_literal(host: str) -> str | None:
    """`host` as an IP address when it is one in canonical form (zone ids included)."""
    try:
        return str(ip_address(unquote(host)))
    except ValueError:
        return None
