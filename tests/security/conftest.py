"""Fixtures of the security tests (from tests/reliability)."""

from tests.gateway.e2e_helpers import cloud, sim, template
from tests.reliability.fixtures import mailgate, servers

__all__ = ["cloud", "mailgate", "servers", "sim", "template"]
