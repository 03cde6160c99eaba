"""What the console does, shared by the HTML pages and the JSON API.

Every function takes the :class:`~mailgate.console.state.Console` and plain values, and
raises ConfigError (ValidationError, NotConfiguredError) with the sentence to show. Writes
to settings go through the Store, which validates them exactly as `mailgate config` does.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from mailgate.account import missing_sender_advice, sender_address
from mailgate.config.errors import ConfigError, NotConfiguredError, ValidationError
from mailgate.config.model import Settings
from mailgate.config.presets import PRESETS
from mailgate.console.state import Console
from mailgate.gateway.queue import State
from mailgate.identity.tokens import token_health
from mailgate.submission.message import build_message, serialize

QUEUE_ACTIONS = ("retry", "hold", "release", "delete")
#: Fields of the SMTP server page (the manual's four plus tenant) and their store keys.
OAUTH_FIELDS = {
    "server": "oauth.server",
    "host": "oauth.host",
    "client_id": "oauth.client_id",
    "scope": "oauth.scope",
    "tenant": "oauth.tenant",
}


def current_settings(console: Console) -> Settings | None:
    try:
        return console.store.settings()
    except NotConfiguredError:
        return None


def restart_needed(console: Console) -> bool:
    """Settings saved that only a restart of `serve` applies (listener, console addresses,
    number of connections); the rest the gateway picks up by itself within seconds."""
    return console.gateway.restart_needed()


def status(console: Console) -> dict[str, Any]:
    """What the Status page shows; the same figures as `mailgate status --json`."""
    store, queue, now = console.store, console.gateway.queue, console.clock()
    settings = current_settings(console) or console.gateway.settings
    account = store.account()
    data: dict[str, Any] = {
        "provider": settings.outbound.provider,
        "server": str(settings.outbound.server),
        "signed_in": account is not None,
        "sender_address": sender_address(settings, account),
        "queue": queue.counts(),
        "oldest_message_at": queue.oldest_active(),
        "listeners": [f"{h}:{p}" + (" (TLS)" if tls else "") for h, p, tls in console.listeners],
        "events": [dataclasses.asdict(e) for e in queue.events(limit=10)],
        "sign_in_needed": console.gateway.engine.signin_needed,
        "restart_needed": restart_needed(console),
    }
    if settings.outbound.oauth is not None:
        data["admin_consent_url"] = settings.outbound.oauth.admin_consent_url
    if account is not None:
        health = token_health(account, now)
        data |= {
            "upn": account.upn,
            "primary_address": account.primary_address,
            "signed_in_at": account.signed_in_at,
            "access_token_expires_at": account.access_token_expires_at,
            "re_sign_in_needed_by": health.resign_in_deadline,
            "re_sign_in_warning": health.resign_in_warning,
            "needs_sign_in": health.needs_sign_in,
            "last_error": account.last_error,
        }
    return data


def smtp_values(console: Console) -> dict[str, Any]:
    """The SMTP server form's values; the password only as "(set)" / "(not set)"."""
    values = console.store.all_values()
    provider = str(values["provider"])
    preset = PRESETS[provider]
    data: dict[str, Any] = {"provider": provider, "uses_oauth": preset.uses_oauth}
    data |= {name: values[key] for name, key in OAUTH_FIELDS.items()}
    data |= {
        "smtp_server": values["smtp.server"],
        "smtp_security": values["smtp.security"],
        "smtp_username": values["smtp.username"],
        "smtp_password": values["smtp.password"],
    }
    settings = current_settings(console)
    oauth = settings.outbound.oauth if settings else None
    data["admin_consent_url"] = oauth.admin_consent_url if oauth else None
    return data


def save_smtp(console: Console, form: dict[str, str]) -> bool:
    """Save the SMTP server page; True when the provider signs in (the wizard comes next)."""
    provider = form.get("provider", "").strip().lower()
    if provider not in PRESETS:
        raise ValidationError(
            f"Unknown provider {provider!r}; choose one of: {', '.join(PRESETS)}."
        )
    store = console.store
    if PRESETS[provider].uses_oauth:
        fields = {name: (form.get(name) or "").strip() or None for name in OAUTH_FIELDS}
        if not fields["client_id"]:
            raise ValidationError(
                "Enter the client ID: the Application (client) ID of your app registration."
            )
        store.apply_provider(provider, **fields)
        return True
    server = (form.get("smtp_server") or "").strip()
    if not server:
        raise ValidationError("Enter the SMTP server address, host[:port].")
    store.apply_provider("none", server=server)
    store.set("smtp.security", form.get("smtp_security") or "starttls")
    store.set("smtp.username", form.get("smtp_username") or "")
    password = form.get("smtp_password") or ""
    if password or form.get("smtp_password_clear"):
        store.set("smtp.password", password)  # write-only: empty field keeps the stored one
    return False


def set_values(console: Console, changes: dict[str, Any]) -> dict[str, Any]:
    """Set several settings, each validated by the store; nothing after a refusal."""
    done: dict[str, Any] = {}
    for key, value in changes.items():
        if key.startswith(("provider", "oauth.", "smtp.")):
            raise ValidationError(f"{key} is changed on the SMTP server page (PUT /api/smtp).")
        done |= console.store.set(key, value)
    return done


def queue_action(console: Console, message_id: int, action: str) -> bool:
    queue, now = console.gateway.queue, time.time()
    if action == "retry":
        changed = queue.retry(message_id, now) > 0
    elif action == "hold":
        changed = queue.hold(message_id, now, "held by the administrator") > 0
    elif action == "release":
        changed = queue.release(message_id, now, "released by the administrator") > 0
    elif action == "delete":
        changed = queue.delete(message_id)
    else:
        raise ValidationError(f"Unknown action {action!r}; use one of {', '.join(QUEUE_ACTIONS)}.")
    console.gateway.engine.wake()
    return changed


def parse_states(raw: str | None) -> list[State] | None:
    if not raw:
        return None
    try:
        return [State(s) for s in raw.split(",") if s]
    except ValueError:
        raise ValidationError(
            f"Unknown state in {raw!r}; use {', '.join(s.value for s in State)}."
        ) from None


async def test_send(console: Console, to: str, subject: str, body: str) -> int:
    """Queue a test message from the sender address; the delivery engine sends it."""
    settings = current_settings(console)
    if settings is None:
        raise NotConfiguredError("Set up the SMTP server first.")
    sender = sender_address(settings, console.store.account())
    if sender is None:
        raise NotConfiguredError(missing_sender_advice(settings))
    try:
        message, recipients = build_message(sender, [to], [], [], subject, body)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    gateway = console.gateway
    message_id = await gateway.db(
        gateway.queue.accept,
        sender,
        recipients,
        serialize(message),
        time.time(),
        "console",
        "console",
        None,
        subject,
    )
    gateway.engine.wake()
    return int(message_id)


def add_device(console: Console, username: str, password: str, note: str) -> None:
    try:
        console.gateway.devices.add(username.strip(), password, time.time(), note.strip())
    except ValueError as error:
        raise ValidationError(str(error)) from None


def describe(error: ConfigError) -> str:
    return str(error)
