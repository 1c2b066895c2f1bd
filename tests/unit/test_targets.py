"""The SSRF guard's judgement of URLs and addresses."""

from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.errors import TargetRefused
from shared.targets import (
    RefusedAddress,
    TargetPolicy,
    TargetUnresolved,
    address_refusal,
    check_target,
    check_url_shape,
)
from tests.support import make_settings

STRICT = TargetPolicy(allow_private=False, allowed_networks=())


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private (RFC 1918)"),
        ("172.16.0.1", "private (RFC 1918)"),
        ("172.31.255.255", "private (RFC 1918)"),
        ("192.168.1.1", "private (RFC 1918)"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT (RFC 6598)"),
        ("100.127.255.254", "carrier-grade NAT (RFC 6598)"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this network (RFC 1122)"),
        ("192.0.2.10", "documentation (RFC 5737)"),
        ("198.51.100.7", "documentation (RFC 5737)"),
        ("203.0.113.99", "documentation (RFC 5737)"),
        ("198.18.0.1", "benchmarking (RFC 2544)"),
        ("198.19.255.1", "benchmarking (RFC 2544)"),
        ("192.0.0.8", "IETF protocol assignments (RFC 6890)"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "unique local (private, RFC 4193)"),
        ("fd12:3456::1", "unique local (private, RFC 4193)"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation (RFC 3849)"),
        ("100::1", "discard-only (RFC 6666)"),
        ("::ffff:10.0.0.1", "IPv4-mapped private (RFC 1918)"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("2002:a00:1::1", "6to4 private (RFC 1918)"),
        ("2002:7f00:1::", "6to4 loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64 link-local"),
        ("64:ff9b:1::1", "private (local-use NAT64, RFC 8215)"),
        ("::7f00:1", "reserved (deprecated IPv4-compatible)"),
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert address_refusal(ip_address(address), STRICT) == reason


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ip_address(address), STRICT) is None


def test_allow_private_lifts_every_refusal() -> None:
    policy = TargetPolicy(allow_private=True, allowed_networks=())
    for address in ("127.0.0.1", "10.0.0.1", "::1", "169.254.169.254", "fd00::1"):
        assert address_refusal(ip_address(address), policy) is None


def test_allowed_networks_allow_only_the_chosen_ranges() -> None:
    policy = TargetPolicy(
        allow_private=False,
        allowed_networks=(ip_network("10.0.0.0/8"), ip_network("127.0.0.2/32")),
    )
    assert address_refusal(ip_address("10.20.30.40"), policy) is None
    assert address_refusal(ip_address("::ffff:10.20.30.40"), policy) is None
    assert address_refusal(ip_address("127.0.0.2"), policy) is None
    assert address_refusal(ip_address("127.0.0.1"), policy) == "loopback"
    assert address_refusal(ip_address("192.168.0.1"), policy) == "private (RFC 1918)"


def test_policy_from_settings_reads_both_settings() -> None:
    settings = make_settings(
        "t", "db", allow_private_targets=False, allowed_target_networks="10.0.0.0/8,fd00::/8"
    )
    policy = TargetPolicy.from_settings(settings)
    assert policy == TargetPolicy(
        allow_private=False, allowed_networks=(ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http"),
        ("file:///etc/passwd", "http"),
        ("gopher://example.com/", "http"),
        ("example.com/hooks", "http"),
        ("http:///hooks", "host"),
        ("https://user:pw@example.com/hooks", "password"),
        ("https://user@example.com/hooks", "user"),
        ("https://example.com:99999/", "port"),
    ],
)
def test_bad_url_shapes_are_refused_with_a_reason(url: str, words: str) -> None:
    with pytest.raises(TargetRefused, match=f"(?i){words}"):
        check_url_shape(url)


@pytest.mark.parametrize(
    "url", ["https://example.com/hooks", "http://example.com:8080/a?b=c", "https://[2606:4700::1]/"]
)
def test_good_url_shapes_pass(url: str) -> None:
    check_url_shape(url)


class FakeResolver(AbstractResolver):
    """Answers every name with the given addresses."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_check_target_returns_the_public_addresses() -> None:
    resolver = FakeResolver("93.184.216.34", "2606:2800:220:1::1")
    addresses = await check_target("https://example.com/hooks", STRICT, resolver)
    assert addresses == ["93.184.216.34", "2606:2800:220:1::1"]


async def test_check_target_refuses_when_any_address_is_private() -> None:
    resolver = FakeResolver("93.184.216.34", "10.0.0.5")
    with pytest.raises(RefusedAddress, match=r"10\.0\.0\.5.*private"):
        await check_target("https://example.com/hooks", STRICT, resolver)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:a9fe:a9fe]/",
    ],
)
async def test_check_target_resolves_literals_like_the_os_and_refuses(url: str) -> None:
    with pytest.raises(RefusedAddress):
        await check_target(url, STRICT)


async def test_check_target_allows_loopback_when_private_targets_are_allowed() -> None:
    policy = TargetPolicy(allow_private=True, allowed_networks=())
    assert await check_target("http://127.0.0.1:9/", policy) == ["127.0.0.1"]


async def test_unresolvable_host_is_refused_as_unresolved() -> None:
    with pytest.raises(TargetUnresolved):
        await check_target("https://no-such-host.invalid/", STRICT)
