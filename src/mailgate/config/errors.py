"""Errors a user meets while setting mailgate up.

Every message is a full sentence that ends with what to do next, so the CLI and the
console can show it as it is. `exit_code` follows the CLI's convention: 2 for a usage or
validation error, 1 for everything else.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailgate.errors import MailgateError


class ConfigError(MailgateError):
    """Base of the settings errors; the message says what to do."""


class ValidationError(ConfigError):
    """A setting value (or a key name) the user typed is not acceptable.

    Built with :meth:`of`, it also keeps its catalog text unformatted with its values, and
    :meth:`in_field` the field it is about: the CLI prints the message (prefixed with the
    option or key), the console names the field with its own label in the reader's language.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        text: str | None = None,
        params: Mapping[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.text = text
        self.params = dict(params or {})
        self.field = field

    @classmethod
    def of(cls, text: str, **params: str) -> ValidationError:
        """An error from a catalog text (marked with N_) and its values."""
        return cls(text.format(**params), text=text, params=params)

    def in_field(self, field: str) -> ValidationError:
        """The same error about *field* (an option such as --client-id, or a setting key)."""
        return ValidationError(f"{field}: {self}", text=self.text, params=self.params, field=field)


class NotInitializedError(ConfigError):
    """The data directory or its database does not exist yet."""


class NotConfiguredError(ConfigError):
    """Settings exist but lack something a command needs (e.g. a client ID)."""


class SecretKeyError(ConfigError):
    """The secret key is missing, malformed, too readable, or not this directory's key."""
