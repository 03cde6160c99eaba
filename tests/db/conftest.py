from tests.gateway.e2e_helpers import cloud, sim

__all__ = ["cloud", "sim"]
