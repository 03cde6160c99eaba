"""Fixtures of the security tests (from tests/reliability)."""

from tests.gateway.e2e_helpers import cloud, mailgate, servers, sim, template

__all__ = ["cloud", "mailgate", "servers", "sim", "template"]
