"""What an administrator can do, for the CLI (`commands/`) and the console alike.

Theory of operation: every operation takes a :class:`GatewayHandle` and plain values, and
raises ConfigError (ValidationError, NotConfiguredError) with the sentence to show. The
CLI passes an :class:`OfflineHandle` (this process has no gateway: a running `serve`
notices the change on its own within seconds); `serve` passes its live gateway to the
console, whose handle runs writes on the gateway's one writer thread and wakes its
delivery engine. So `mailgate status --json` and the console's Status page are one
function with one set of fields, and a queue action means the same from both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from mailgate.account import missing_sender_advice, sender_address
from mailgate.config.errors import NotConfiguredError, ValidationError
from mailgate.config.model import Settings
from mailgate.config.presets import PRESETS
from mailgate.config.store import Store
from mailgate.db.writer import check_writable
from mailgate.gateway.delivery import SIGN_IN_HOLD
from mailgate.gateway.devices import DeviceAccount, DeviceAccounts
from mailgate.gateway.queue import Incoming, QueueStore, State
from mailgate.identity.tokens import token_health
from mailgate.submission.message import build_message, serialize
from mailgate.texts import N_

T = TypeVar("T")

QUEUE_ACTIONS = ("retry", "hold", "release", "delete")
#: Fields of the SMTP server page (the manual's four plus tenant) and their store keys.
OAUTH_FIELDS = {
    "server": "oauth.server",
    "host": "oauth.host",
    "client_id": "oauth.client_id",
    "scope": "oauth.scope",
    "tenant": "oauth.tenant",
}


class GatewayHandle(Protocol):
    """The part of a gateway that administration needs."""

    @property
    def store(self) -> Store: ...
    @property
    def queue(self) -> QueueStore: ...
    @property
    def devices(self) -> DeviceAccounts: ...
    @property
    def settings(self) -> Settings:
        """The settings the gateway runs with (may be incomplete: `configured` False)."""
        ...

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a database call on the gateway's writer."""
        ...

    def wake(self) -> None:
        """The queue changed: deliver now (safe from any thread)."""
        ...

    def sign_in_needed(self) -> bool:
        """The delivery engine holds mail because the sign-in is no longer valid."""
        ...

    def signed_in(self) -> None:
        """Someone signed in: drop the cached access token and resume held mail."""
        ...

    def restart_needed(self) -> bool:
        """Settings were saved that only a restart of `serve` applies."""
        ...


@dataclasses.dataclass
class OfflineHandle:
    """The CLI's handle: the data directory's stores, no gateway in this process."""

    store: Store
    queue: QueueStore = dataclasses.field(init=False)
    devices: DeviceAccounts = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.queue = QueueStore(self.store.engine)
        self.devices = DeviceAccounts(self.store.engine)

    @property
    def settings(self) -> Settings:
        return self.store.settings(allow_incomplete=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def wake(self) -> None:
        """A running `serve` looks at the queue again within its housekeeping interval."""

    def sign_in_needed(self) -> bool:
        return False

    def signed_in(self) -> None:
        """A running `serve` notices the new account by its sign-in time."""

    def restart_needed(self) -> bool:
        return False


# -- status and readiness -----------------------------------------------------------------------
def current_settings(handle: GatewayHandle) -> Settings | None:
    try:
        return handle.store.settings()
    except NotConfiguredError:
        return None


def status(
    handle: GatewayHandle, now: float, listeners: Sequence[tuple[str, int, bool]] = ()
) -> dict[str, Any]:
    """`mailgate status --json` and the console's Status page: provider, account, tokens,
    queue, recent events."""
    store, queue = handle.store, handle.queue
    settings = current_settings(handle) or handle.settings
    outbound, account = settings.outbound, store.account()
    data: dict[str, Any] = {
        "provider": outbound.provider,
        "server": str(outbound.server),
        "security": outbound.security.value,
    }
    if outbound.oauth is not None:
        data |= {
            "sign_in_host": outbound.oauth.login_host,
            "tenant": outbound.oauth.tenant,
            "client_id": outbound.oauth.client_id,
            "admin_consent_url": outbound.oauth.admin_consent_url,
        }
    data["signed_in"] = account is not None
    data["sender_address"] = sender_address(settings, account)
    if account is not None:
        health = token_health(account, now)
        data |= {
            "upn": account.upn,
            "primary_address": account.primary_address,
            "signed_in_at": account.signed_in_at,
            "access_token_expires_at": account.access_token_expires_at,
            "refresh_token_last_used_at": account.last_refresh_at,
            "re_sign_in_needed_by": health.resign_in_deadline,
            "re_sign_in_warning": health.resign_in_warning,
            "needs_sign_in": health.needs_sign_in,
            "last_error": account.last_error,
            "last_error_at": account.last_error_at,
        }
    data |= {
        "queue": queue.counts(),
        "oldest_message_at": queue.oldest_active(),
        "events": [dataclasses.asdict(e) for e in queue.events(limit=10)],
        "listeners": [f"{h}:{p}" + (" (TLS)" if tls else "") for h, p, tls in listeners],
        "sign_in_needed": handle.sign_in_needed(),
        "restart_needed": handle.restart_needed(),
    }
    return data


#: Mail waiting longer than this (not held) means delivery has stalled.
STALLED_AFTER = 3600.0


@dataclasses.dataclass(frozen=True)
class Attention:
    """Something that needs the administrator: a kind the pages word, and its values."""

    kind: str  # sign_in_needed | held | expiring | upstream_down | stalled
    count: int = 0
    at: float | None = None
    upn: str | None = None


def attention(handle: GatewayHandle, now: float) -> list[Attention]:
    """What the status banner shows, most urgent first (each with its one fix on the page)."""
    store, queue = handle.store, handle.queue
    found: list[Attention] = []
    account = store.account()
    counts = queue.counts()
    health = token_health(account, now) if account is not None else None
    dead = handle.sign_in_needed() or (health is not None and health.needs_sign_in)
    if account is not None and dead:
        found.append(Attention("sign_in_needed", counts.get("held", 0), upn=account.upn))
    elif counts.get("held", 0):
        found.append(Attention("held", counts["held"]))
    if account is not None and health is not None and not dead and health.resign_in_warning:
        found.append(Attention("expiring", at=health.resign_in_deadline, upn=account.upn))
    recent = [e for e in queue.events(limit=50) if e.kind in ("upstream_down", "upstream_up")]
    if recent and recent[0].kind == "upstream_down":
        found.append(Attention("upstream_down", at=recent[0].at))
    oldest = queue.oldest_active()
    waiting = counts.get("queued", 0) + counts.get("deferred", 0)
    if waiting and oldest is not None and now - oldest > STALLED_AFTER:
        found.append(Attention("stalled", waiting, at=oldest))
    return found


def readiness(handle: GatewayHandle) -> str | None:
    """None when the gateway can take and deliver mail, else the reason (/readyz's 503)."""
    try:
        check_writable(handle.store.engine)
    except Exception as error:
        return f"the store cannot be written: {error}"
    if handle.settings.outbound.oauth is None:
        return None
    if handle.store.account() is None:
        return "nobody is signed in; sign in on the console's Sign-in page"
    if handle.sign_in_needed():
        return "the sign-in is no longer valid; sign in again"
    return None


# -- the queue ---------------------------------------------------------------------------------
def queue_action(handle: GatewayHandle, message_id: int | None, action: str, now: float) -> int:
    """retry / hold / release one message (or, None, all it applies to), or delete one;
    how many messages changed. Wakes the delivery engine."""
    queue = handle.queue
    if action == "retry":
        changed = queue.retry(message_id, now)
    elif action == "hold":
        changed = queue.hold(message_id, now, "held by the administrator")
    elif action == "release":
        changed = queue.release(message_id, now, "released by the administrator")
    elif action == "delete" and message_id is not None:
        changed = int(queue.delete(message_id))
    else:
        raise ValidationError(f"Unknown action {action!r}; use one of {', '.join(QUEUE_ACTIONS)}.")
    handle.wake()
    return changed


#: held_reason while a console sign-in runs with "keep held mail for a different account":
#: the engine releases only SIGN_IN_HOLD by itself, so these wait for the account's check.
ACCOUNT_CHECK_HOLD = "held until the signed-in account is confirmed"


def guard_held_mail(handle: GatewayHandle, now: float) -> int:
    """Before a sign-in: mail held for the sign-in waits for the account to be checked."""
    return handle.queue.rehold(SIGN_IN_HOLD, ACCOUNT_CHECK_HOLD, now)


def settle_held_mail(handle: GatewayHandle, now: float, same_account: bool | None) -> int:
    """After that sign-in: the same account sends the held mail (released); a different one
    leaves it held for the administrator (Release sends it as the new account); a failed or
    cancelled sign-in (None) gives it back to the next sign-in."""
    queue = handle.queue
    if same_account is None:
        return queue.rehold(ACCOUNT_CHECK_HOLD, SIGN_IN_HOLD, now)
    if not same_account:
        return 0
    changed = queue.release(None, now, "signed in; released", ACCOUNT_CHECK_HOLD)
    handle.wake()
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


async def test_send(handle: GatewayHandle, to: str, subject: str, body: str) -> int:
    """Queue a test message from the sender address; the delivery engine sends it."""
    settings = current_settings(handle)
    if settings is None:
        raise NotConfiguredError("Set up the SMTP server first.")
    sender = sender_address(settings, handle.store.account())
    if sender is None:
        raise NotConfiguredError(missing_sender_advice(settings))
    try:
        message, recipients = build_message(sender, [to], [], [], subject, body)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    incoming = Incoming(
        sender, tuple(recipients), serialize(message), "console", "console", None, subject
    )
    (message_id,) = await handle.run(handle.queue.accept_many, [incoming], time.time())
    handle.wake()
    return int(message_id)


# -- device accounts ---------------------------------------------------------------------------
def add_device(handle: GatewayHandle, username: str, password: str, note: str, now: float) -> None:
    try:
        handle.devices.add(username.strip(), password, now, note.strip())
    except ValueError as error:
        raise ValidationError(str(error)) from None


def list_devices(handle: GatewayHandle) -> list[DeviceAccount]:
    return handle.devices.list()


def remove_device(handle: GatewayHandle, username: str) -> bool:
    return handle.devices.remove(username)


# -- settings ----------------------------------------------------------------------------------
def smtp_values(handle: GatewayHandle) -> dict[str, Any]:
    """The SMTP server form's values; the password only as "(set)" / "(not set)"."""
    values = handle.store.all_values()
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
    settings = current_settings(handle)
    oauth = settings.outbound.oauth if settings else None
    data["admin_consent_url"] = oauth.admin_consent_url if oauth else None
    return data


def save_smtp(handle: GatewayHandle, form: dict[str, str]) -> bool:
    """Save the SMTP server page; True when the provider signs in (the wizard comes next)."""
    provider = form.get("provider", "").strip().lower()
    if provider not in PRESETS:
        raise ValidationError(
            f"Unknown provider {provider!r}; choose one of: {', '.join(PRESETS)}."
        )
    store = handle.store
    if PRESETS[provider].uses_oauth:
        fields = {name: (form.get(name) or "").strip() or None for name in OAUTH_FIELDS}
        if not fields["client_id"]:
            raise ValidationError.of(
                N_("Enter the client ID: the Application (client) ID of your app registration.")
            ).in_field("--client-id")
        store.apply_provider(provider, **fields)
        return True
    server = (form.get("smtp_server") or "").strip()
    if not server:
        raise ValidationError.of(N_("Enter the SMTP server address, host[:port].")).in_field(
            "smtp.server"
        )
    store.apply_provider("none", server=server)
    store.set("smtp.security", form.get("smtp_security") or "starttls")
    store.set("smtp.username", form.get("smtp_username") or "")
    password = form.get("smtp_password") or ""
    if password or form.get("smtp_password_clear"):
        store.set("smtp.password", password)  # write-only: empty field keeps the stored one
    return False


def set_values(handle: GatewayHandle, changes: dict[str, Any]) -> dict[str, Any]:
    """Set several settings, each validated by the store; nothing after a refusal."""
    done: dict[str, Any] = {}
    for key, value in changes.items():
        if key.startswith(("provider", "oauth.", "smtp.")):
            raise ValidationError(f"{key} is changed on the SMTP server page (PUT /api/smtp).")
        done |= handle.store.set(key, value)
    return done
