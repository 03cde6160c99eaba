"""Upstream SMTP submission: the XOAUTH2 client and what Exchange's replies mean.

- :mod:`.client` - :class:`SubmissionClient` (connect, authenticate, send, reset, close)
- :mod:`.replies` - reply parsing and :func:`classify` (kind, action, admin explanation)
- :mod:`.xoauth2` - the XOAUTH2 initial response and the one-line/two-step decision
- :mod:`.message` - building the MIME message of `mailgate send`
"""

from mailgate.submission.client import (
    Credentials,
    PasswordCredentials,
    SendResult,
    SubmissionClient,
    Timeouts,
    XOAuth2Credentials,
)
from mailgate.submission.errors import SubmissionError, SubmissionNetworkError
from mailgate.submission.replies import (
    Action,
    Classification,
    Reply,
    ReplyContext,
    ReplyKind,
    classify,
    parse_reply,
)
from mailgate.trust import CaBundleError, ssl_context

__all__ = [
    "Action",
    "CaBundleError",
    "Classification",
    "Credentials",
    "PasswordCredentials",
    "Reply",
    "ReplyContext",
    "ReplyKind",
    "SendResult",
    "SubmissionClient",
    "SubmissionError",
    "SubmissionNetworkError",
    "Timeouts",
    "XOAuth2Credentials",
    "classify",
    "parse_reply",
    "ssl_context",
]
