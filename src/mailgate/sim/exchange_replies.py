"""What Exchange Online says on smtp.office365.com:587, word for word.

Texts come from SPEC.md ("How Microsoft behaves") and from transcripts of the real
service (e.g. the EHLO lines, "250 2.1.0 Sender OK", "354 Start mail input; ...",
the SendAsDenied line and its diagnostic block). Exchange ends many failure texts
with a bracketed suffix "[<host> <ISO timestamp> <16 hex id>]" or "[Hostname=<host>]";
the functions here add those, so the simulated server only chooses *which* reply to send.

Texts drift between clouds and years (SPEC): the product classifies by code and enhanced
status code; the simulator keeps the texts so tests and the admin see what Microsoft shows.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets

# -- fixed replies ------------------------------------------------------------------------
STARTTLS_READY = "220 2.0.0 SMTP server ready"
AUTH_SUCCESS = "235 2.7.0 Authentication successful"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
RESETTING = "250 2.0.0 Resetting"
NOOP_OK = "250 2.0.0 OK"
START_MAIL_INPUT = "354 Start mail input; end with <CRLF>.<CRLF>"
CLOSING = "221 2.0.0 Service closing transmission channel"
#: RFC 4954 section 4: the server's empty challenge for a mechanism with a client-first response.
AUTH_CONTINUE = "334 "
#: AUTH LOGIN prompts: base64 of "Username:" and "Password:".
AUTH_LOGIN_USERNAME = "334 VXNlcm5hbWU6"
AUTH_LOGIN_PASSWORD = "334 UGFzc3dvcmQ6"

UNRECOGNIZED_AUTH_TYPE = "504 5.7.4 Unrecognized authentication type"
LINE_TOO_LONG = "500 5.5.2 Line too long"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
#: SPEC lists this older text; today's Exchange answers basic AUTH with 535 5.7.139 instead,
#: so the simulator does not send it. Kept for the product's catalogue and tests.
BASIC_AUTH_NOT_SUPPORTED = "550 5.7.30 Basic authentication is not supported for Client Submission."

SEND_HELLO_FIRST = "503 5.5.2 Send hello first"
SENDER_ALREADY_SPECIFIED = "503 5.5.2 Sender already specified"
NEED_MAIL = "503 5.5.2 Need mail command"
NEED_RCPT = "503 5.5.2 Need rcpt command"
ALREADY_AUTHENTICATED = "503 5.5.2 Already authenticated"
BAD_SEQUENCE = "503 5.5.1 Bad sequence of commands"
INVALID_ARGUMENTS = "501 5.5.4 Invalid arguments"
INVALID_DOMAIN = "501 5.5.4 Invalid domain name"
INVALID_SENDER = "501 5.1.7 Invalid address"
INVALID_RECIPIENT = "501 5.1.3 Invalid address"
AUTH_ABORTED = "501 5.0.0 Authentication aborted"
#: The generic text Exchange's front end uses for transient internal faults; the simulator
#: never shows a Python exception to a client (STYLE.md: aiosmtpd's handle_exception does).
TEMPORARY_SERVER_ERROR = "451 4.7.0 Temporary server error. Please try again later"
TIMEOUT = "421 4.4.1 Connection timed out"

EHLO_KEYWORDS_BEFORE_TLS = (
    "SIZE 157286400",
    "PIPELINING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "STARTTLS",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "SMTPUTF8",
)
#: After STARTTLS the STARTTLS line becomes "AUTH LOGIN XOAUTH2" (same position).
EHLO_KEYWORDS_AFTER_TLS = tuple(
    "AUTH LOGIN XOAUTH2" if k == "STARTTLS" else k for k in EHLO_KEYWORDS_BEFORE_TLS
)
ADVERTISED_SIZE = 157_286_400


# -- ids and dates as Exchange writes them ---------------------------------------------------
def exchange_id() -> str:
    """A 16-hex-digit id like Exchange's "[08DDD30471EE4ED5]" (they start with 08D)."""
    return "08D" + secrets.token_hex(7).upper()[:13]


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc2822_date(now: float) -> str:
    """RFC 2822 date as in the banner: "Mon, 1 Jun 2026 12:00:00 +0000" (day not zero-padded)."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return (
        f"{_WEEKDAYS[t.weekday()]}, {t.day} {_MONTHS[t.month - 1]} {t.year} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000"
    )


def iso_timestamp(now: float) -> str:
    """The "2026-06-01T12:00:00.000Z" form: milliseconds, as in Exchange's bracketed suffixes."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def diagnostic_suffix(host: str, now: float) -> str:
    """The "[<host> <ISO timestamp> <hex id>]" that ends 530/535 replies."""
    return f"[{host} {iso_timestamp(now)} {exchange_id()}]"


# -- replies with variable parts ------------------------------------------------------------
def banner(host: str, now: float) -> str:
    return f"220 {host} Microsoft ESMTP MAIL Service ready at {rfc2822_date(now)} [{exchange_id()}]"


def ehlo_lines(host: str, client_ip: str, tls: bool) -> list[str]:
    """The EHLO reply as lines without codes: greeting first, then the keywords."""
    keywords = EHLO_KEYWORDS_AFTER_TLS if tls else EHLO_KEYWORDS_BEFORE_TLS
    return [f"{host} Hello [{client_ip}]", *keywords]


def helo(host: str, client_ip: str) -> str:
    return f"250 {host} Hello [{client_ip}]"


def unrecognized_command(verb: str) -> str:
    return f"500 5.3.3 Unrecognized command '{verb}'"


def not_authenticated(host: str, now: float) -> str:
    return f"530 5.7.57 Client not authenticated to send mail. {diagnostic_suffix(host, now)}"


def auth_unsuccessful(host: str, now: float) -> str:
    return f"535 5.7.3 Authentication unsuccessful {diagnostic_suffix(host, now)}"


def smtp_auth_disabled(scope: str, host: str, now: float) -> str:
    """*scope* is "Tenant" or "Mailbox" (Set-CASMailbox -SmtpClientAuthenticationDisabled)."""
    return (
        f"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        f"{scope}. Visit https://aka.ms/smtp_auth_disabled for more information. "
        f"{diagnostic_suffix(host, now)}"
    )


def basic_auth_disabled(host: str, now: float) -> str:
    return (
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
        f"{diagnostic_suffix(host, now)}"
    )


def xoauth2_error_challenge(scope: str) -> str:
    """RFC 7628 section 3.2.2 error "challenge": 334 + base64 JSON; the client answers empty."""
    body = json.dumps({"status": "401", "schemes": "bearer", "scope": scope}, separators=(",", ":"))
    return "334 " + base64.b64encode(body.encode()).decode("ascii")


def accepted(message_id: str, host: str) -> str:
    """End of DATA accepted: "250 2.0.0 OK <Message-ID> [Hostname=...]" (Exchange echoes it)."""
    return f"250 2.0.0 OK {message_id} [Hostname={host}]"


def chunk_received(size: int) -> str:
    """Reply to a BDAT chunk that is not LAST (RFC 3030 section 2); Exchange's text unverified."""
    return f"250 2.0.0 BDAT command successful, {size} octets received"


def concurrent_connections_exceeded(host: str) -> str:
    return (
        "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
        f"for more information. [Hostname={host}]"
    )


def sender_thread_limit_exceeded(host: str) -> str:
    """The documented 432 text (older clients' logs); `concurrent_connections_exceeded` is
    what clients see now."""
    return f"432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname={host}]"


def submission_quota_exceeded(host: str) -> str:
    return (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
        "process message due to a permanent exception with message The message can't be "
        f"submitted because the sender's submission quota was exceeded. [Hostname={host}]"
    )


#: A shortened copy of the diagnostic block real SendAsDenied replies carry.
_SEND_AS_DIAGNOSTICS = (
    "Cannot submit message. 1.84300:0A000000, 1.84300:0E000000, 1.73948:00000000, "
    "0.117068:0B000000, 1.79180:0A000000, 1.79180:FA000000"
)


def send_as_denied(upn: str, address: str, host: str) -> str:
    return (
        f"554 5.2.252 SendAsDenied; {upn} not allowed to send as {address}; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; "
        "Failed to process message due to a permanent exception with message "
        f"[BeginDiagnosticData]{_SEND_AS_DIAGNOSTICS}[EndDiagnosticData] [Hostname={host}]"
    )
