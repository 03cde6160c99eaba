"""Fixtures of the reliability tests (shared with tests/security)."""

from tests.reliability.fixtures import cloud, mailgate, servers, sim, template

__all__ = ["cloud", "mailgate", "servers", "sim", "template"]
