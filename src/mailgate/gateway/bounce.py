"""Bounce reports (RFC 3464 delivery status notifications) for mail that failed for good.

The report goes to the original envelope sender through the same upstream as everything
else, so it is sent *as* the signed-in mailbox (Exchange accepts no other sender); it is
never sent for a message whose envelope sender was null (`<>`), which is how bounce
loops are prevented (RFC 5321 section 4.5.5). It carries the original headers only
(text/rfc822-headers), not a 35 MB scan a second time.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from mailgate.gateway.headers import decoded, first_value, split_fields


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    #: The final reply, e.g. "554 5.2.252 SendAsDenied; ...".
    reply: str
    #: Enhanced status code (RFC 3463), e.g. "5.2.252"; "5.0.0" when the reply had none.
    status: str
    #: What the administrator or sender can do, in words.
    advice: str


def should_bounce(envelope_from: str) -> bool:
    """No report for the null sender: that is what stops loops of bounces."""
    return bool(envelope_from.strip().strip("<>"))


def build_bounce(
    original: bytes,
    envelope_from: str,
    failed: list[FailedRecipient],
    *,
    reporting_host: str,
    remote_host: str,
    report_from: str,
    arrival: float,
    now: float,
) -> EmailMessage | Message:
    """The multipart/report to send to *envelope_from* about *failed* recipients."""
    headers, _ = split_fields(original)
    original_headers = b"".join(headers)
    subject = decoded(first_value(original, "Subject") or "")
    human = [
        "This is the mailgate gateway at " + reporting_host + ".",
        "",
        "Your message could not be delivered to one or more recipients. It will not be retried.",
        "",
    ]
    for item in failed:
        human += [f"  {item.address}", f"    {item.reply}", f"    {item.advice}", ""]
    human.append(f"Original subject: {subject}" if subject else "")
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = email.utils.formataddr(("Mail Delivery System", report_from))
    report["To"] = envelope_from
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = email.utils.formatdate(now, localtime=False)
    report["Message-ID"] = email.utils.make_msgid(domain=report_from.rpartition("@")[2] or None)
    # RFC 3834: automatic replies must not be answered automatically.
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText("\n".join(human) + "\n", "plain", "utf-8"))
    report.attach(_delivery_status(failed, reporting_host, remote_host, arrival, now))
    headers_part = MIMEBase("text", "rfc822-headers")
    headers_part.set_payload(original_headers.decode("utf-8", errors="replace"))
    report.attach(headers_part)
    return report


def _delivery_status(
    failed: list[FailedRecipient], reporting_host: str, remote_host: str, arrival: float, now: float
) -> Message:
    # RFC 3464 section 2.1: per-message fields, then one group of fields per recipient;
    # the email package models each group as a header-only Message.
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {reporting_host}"
    per_message["Arrival-Date"] = email.utils.formatdate(arrival)
    groups: list[Message | str] = [per_message]
    for item in failed:
        group = Message()
        group["Final-Recipient"] = f"rfc822; {item.address}"
        group["Action"] = "failed"
        group["Status"] = item.status
        group["Remote-MTA"] = f"dns; {remote_host}"
        group["Diagnostic-Code"] = f"smtp; {_one_line(item.reply)}"
        group["Last-Attempt-Date"] = email.utils.formatdate(now)
        groups.append(group)
    part = MIMEBase("message", "delivery-status")
    part.set_payload(groups)
    return part


def _one_line(text: str) -> str:
    return " ".join(text.split())
