"""Fixtures of the security tests (from tests/reliability)."""

from tests.reliability.fixtures import cloud, mailgate, servers, sim, template

__all__ = ["cloud", "mailgate", "servers", "sim", "template"]
