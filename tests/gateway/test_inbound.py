"""Inbound decisions: allowed networks and the AUTH throttle, as tables."""

from __future__ import annotations

import pytest

from mailgate.gateway.inbound import AuthThrottle, InboundPolicy, parse_networks


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.9", True),
        ("172.32.0.1", False),
        ("192.168.10.20", True),
        ("8.8.8.8", False),
        ("::1", True),
        ("::ffff:192.168.1.5", True),
        ("::ffff:8.8.4.4", False),
        ("fe80::1%eth0", True),
        ("2001:db8::1", False),
        ("not an address", False),
        ("", False),
    ],
)
def test_default_networks(address: str, allowed: bool) -> None:
    assert InboundPolicy().client_allowed(address) is allowed


def test_custom_networks_and_errors() -> None:
    policy = InboundPolicy(allowed_networks=("203.0.113.7", "198.51.100.0/24"))
    assert policy.client_allowed("203.0.113.7")
    assert policy.client_allowed("198.51.100.200")
    assert not policy.client_allowed("127.0.0.1")
    with pytest.raises(ValueError, match=r"192\.168\.1\.0/24"):
        parse_networks(["192.168.1.0/33"])


def test_throttle_locks_after_failures_in_the_window() -> None:
    throttle = AuthThrottle(max_failures=3, window=60, lockout=300)
    for t in (0.0, 10.0):
        throttle.failed("10.0.0.5", t)
        assert not throttle.locked("10.0.0.5", t)
    throttle.failed("10.0.0.5", 20.0)
    assert throttle.locked("10.0.0.5", 21.0)
    assert not throttle.locked("10.0.0.6", 21.0)
    assert throttle.locked("10.0.0.5", 319.0)
    assert not throttle.locked("10.0.0.5", 320.0)


def test_throttle_forgets_old_failures_and_successes() -> None:
    throttle = AuthThrottle(max_failures=3, window=60, lockout=300)
    throttle.failed("a", 0.0)
    throttle.failed("a", 1.0)
    throttle.failed("a", 100.0)  # the first two are out of the window
    assert not throttle.locked("a", 100.0)
    throttle.failed("b", 0.0)
    throttle.failed("b", 1.0)
    throttle.succeeded("b")
    throttle.failed("b", 2.0)
    assert not throttle.locked("b", 2.0)
