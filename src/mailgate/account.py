"""Glue between the settings store and the identity package: who is signed in, and how
to get a token for them. Used by the CLI, the gateway and (later) the console."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mailgate.config.model import AccountState, Settings
from mailgate.config.store import Store
from mailgate.identity.http import build_session
from mailgate.identity.signin import DeviceCodeSignIn, SignInEvent
from mailgate.identity.tokens import TokenManager

#: Secret name of the MSAL token cache (refresh token, access token, id token), encrypted.
TOKEN_CACHE_SECRET = "msal.token_cache"  # noqa: S105 (a name, not a secret)


class StoreTokenCache:
    """identity.store.TokenCacheStore on the encrypted settings store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self) -> str | None:
        return self.store.secret(TOKEN_CACHE_SECRET)

    def save(self, serialized: str) -> None:
        self.store.set_secret(TOKEN_CACHE_SECRET, serialized)

    def load_account(self) -> AccountState | None:
        return self.store.account()

    def save_account(self, account: AccountState | None) -> None:
        self.store.save_account(account)


def token_lock_path(data_dir: Path) -> Path:
    """The file every mailgate process of one data directory locks to refresh tokens."""
    return data_dir / "token.lock"


def token_manager(store: Store, settings: Settings) -> TokenManager:
    oauth = settings.outbound.oauth
    if oauth is None:
        raise ValueError("the provider does not sign in with OAuth")
    return TokenManager(
        oauth,
        settings.trust,
        StoreTokenCache(store),
        token_lock_path(store.data_dir),
        session=build_session(settings.trust, cache_dir=store.data_dir),
    )


def device_sign_in(
    store: Store, settings: Settings, on_event: Callable[[SignInEvent], None] | None = None
) -> DeviceCodeSignIn:
    oauth = settings.outbound.oauth
    if oauth is None:
        raise ValueError("the provider does not sign in with OAuth")
    return DeviceCodeSignIn(
        oauth,
        settings.trust,
        StoreTokenCache(store),
        lock_path=token_lock_path(store.data_dir),
        on_event=on_event,
        session=build_session(settings.trust, cache_dir=store.data_dir),
    )


def sender_address(settings: Settings, account: AccountState | None) -> str | None:
    """The configured sender address, else the account's primary address (the ID token's
    `email`; the XOAUTH2 user stays the UPN, which may differ)
    (for provider `none`, the SMTP user name when it is an address)."""
    if settings.sender_address:
        return settings.sender_address
    if account is not None:
        return account.primary_address
    username = settings.outbound.username
    return username if username and "@" in username else None


def missing_sender_advice(settings: Settings) -> str:
    """What to do when :func:`sender_address` is None, for the CLI, the console and doctor.

    With an OAuth provider the sign-in brings the address; with provider `none` nothing
    does (unless the SMTP user name is an address): the setting must be made.
    """
    set_it = "`mailgate config set sender.address you@example.com` (console: Device details)"
    if settings.outbound.oauth is None:
        return (
            "There is no sender address: the provider is `none`, so there is no signed-in "
            f"account to send as. Set sender.address with {set_it}."
        )
    return (
        "There is no sender address yet: sign in with `mailgate login` (the account's "
        f"primary address becomes the sender address), or set sender.address with {set_it}."
    )
