"""Errors a user meets while setting mailgate up.

Every message is a full sentence that ends with what to do next, so the CLI and the
console can show it as it is. `exit_code` follows the CLI's convention: 2 for a usage or
validation error, 1 for everything else.
"""

from __future__ import annotations

from mailgate.errors import MailgateError


class ConfigError(MailgateError):
    """Base of the settings errors; the message says what to do."""


class ValidationError(ConfigError):
    """A setting value (or a key name) the user typed is not acceptable."""

    exit_code = 2


class NotInitializedError(ConfigError):
    """The data directory or its database does not exist yet."""


class NotConfiguredError(ConfigError):
    """Settings exist but lack something a command needs (e.g. a client ID)."""


class SecretKeyError(ConfigError):
    """The secret key is missing, malformed, too readable, or not this directory's key."""
