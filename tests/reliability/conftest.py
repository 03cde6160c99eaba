"""Fixtures of the reliability tests (shared with tests/security)."""

from tests.gateway.e2e_helpers import cloud, mailgate, servers, sim, template

__all__ = ["cloud", "mailgate", "servers", "sim", "template"]
