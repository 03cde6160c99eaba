"""The errors of upstream submission. Each carries what happened and what to do.

No error ever contains an access token, a password or an AUTH command line: messages are
built only from server replies, addresses and our own sentences.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailgate.errors import MailgateError
from mailgate.submission.replies import Classification, Reply, ReplyKind


class SubmissionError(MailgateError):
    """The upstream server refused a step, or could not be reached.

    ``reply`` is None when there was no reply (network fault, local refusal);
    ``classification`` says what it means and what to do (``classification.action``).
    """

    def __init__(
        self,
        classification: Classification,
        reply: Reply | None = None,
        *,
        stage: str = "",
        challenge: Mapping[str, object] | None = None,
        refused: Mapping[str, Reply] | None = None,
    ) -> None:
        self.classification = classification
        self.reply = reply
        #: The SMTP step that failed: "connect", "EHLO", "STARTTLS", "AUTH", "MAIL FROM", ...
        self.stage = stage
        #: The decoded XOAUTH2 error challenge (RFC 7628 style), if the server sent one.
        self.challenge = dict(challenge) if challenge else None
        #: Per-recipient refusals when no recipient was accepted.
        self.refused = dict(refused) if refused else {}
        super().__init__(self._text())

    @property
    def kind(self) -> ReplyKind:
        return self.classification.kind

    def _text(self) -> str:
        parts = [str(self.classification)]
        if self.reply is not None:
            where = f" to {self.stage}" if self.stage else ""
            parts.append(f"Server reply{where}: {self.reply}")
        return " ".join(parts)


class SubmissionNetworkError(SubmissionError):
    """No usable reply: refused, reset, timed out, TLS failure, or not SMTP at all."""
