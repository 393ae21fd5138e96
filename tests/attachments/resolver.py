"""Resolvers for tests: nothing a test fetches can resolve to an address off this machine.

`loopback_only` is every test's resolver (tests/conftest.py): loopback names and literals resolve
to themselves, `page.test` to 127.0.0.1, and every other name to nothing (refused as unresolved).
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = {"localhost": ["127.0.0.1"], "page.test": ["127.0.0.1"]}


def loopback_only(host: str, port: int) -> list[str]:
    if host.lower() in LOOPBACK_NAMES:
        return LOOPBACK_NAMES[host.lower()]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return []
    mapped = getattr(address, "ipv4_mapped", None)
    return [host] if address.is_loopback or (mapped is not None and mapped.is_loopback) else []


class StubResolver:
    """Names to addresses as a test says, recording every lookup; for refusals only (the tests that
    use a non-loopback answer also forbid every connection, tests/attachments/conftest.py)."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return list(self.names.get(host, []))


def with_a_private_name(host: str, port: int) -> list[str]:
    """`loopback_only`, plus `intranet.example` resolving to 10.0.0.1: for refusals only."""
    return ["10.0.0.1"] if host.lower() == "intranet.example" else loopback_only(host, port)
