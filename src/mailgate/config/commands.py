"""`mailgate init` and `mailgate config ...`: parse, call the store, print plainly.

Output is plain text for people and `--json` for scripts. Errors go to stderr as one
sentence that says what to do; exit status 2 for usage and validation errors, 1 for others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from mailgate.config.keys import KEYS, SettingValue, get_key
from mailgate.config.model import OAuthConfig
from mailgate.config.paths import CliState
from mailgate.config.presets import PRESETS
from mailgate.config.transfer import SECRETS_NOTE, export_toml, parse_toml

if TYPE_CHECKING:
    from mailgate.config.store import Store

P = ParamSpec("P")
R = TypeVar("R")


def data_dir_of(ctx: click.Context) -> Path:
    """The data directory chosen by --data-dir / MAILGATE_DATA_DIR / the default."""
    state = ctx.find_object(CliState)
    return (state or CliState()).data_dir


def open_store(ctx: click.Context) -> Store:
    """Open the settings store of the data directory the command line points at."""
    # Imported here so `mailgate --help` does not load SQLAlchemy.
    from mailgate.config.store import Store

    return Store.open(data_dir_of(ctx))


def _format(value: SettingValue) -> str:
    return ", ".join(value) if isinstance(value, list) else value


def _echo_changes(changes: Mapping[str, SettingValue]) -> None:
    for key, value in changes.items():
        click.echo(f"{key} = {_format(value)}")


# --- init -------------------------------------------------------------------------------------


@click.command("init")
@click.pass_context
def init_command(ctx: click.Context) -> None:
    """Create the data directory, settings store and secret key."""
    from mailgate.config.store import init_data_dir

    data_dir = data_dir_of(ctx)
    with init_data_dir(data_dir) as store:
        if not store.created:
            click.echo(f"The data directory {data_dir} already exists; nothing was changed.")
            return
        click.echo(f"Created the mailgate data directory {data_dir}.")
        if store.key_origin == "MAILGATE_SECRET_KEY":
            click.echo(
                "Secrets are encrypted with the key in MAILGATE_SECRET_KEY (no key file written). "
                "Keep that key: without it the stored sign-in and password cannot be read."
            )
        else:
            click.echo(
                f"Secret key: {store.key_origin} (mode 0600). Back it up apart from the database: "
                "without it the stored sign-in and password cannot be read."
            )
        click.echo(
            "Next: choose the provider, e.g. "
            "`mailgate config provider exchange-online --client-id <your app's client ID>`."
        )


# --- config -----------------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Show and change settings (`mailgate config show` lists every key)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of all settings.")
@click.pass_context
def show_command(ctx: click.Context, as_json: bool) -> None:
    """Show every setting; secrets only as (set) / (not set)."""
    with open_store(ctx) as store:
        values = store.all_values()
        raw = store.values()
    if as_json:
        click.echo(json.dumps(values, ensure_ascii=False, indent=2))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        click.echo(f"{key:<{width}}  {_format(value)}")
    preset = PRESETS.get(str(raw["provider"]))
    if preset is not None and preset.uses_oauth:
        click.echo("\n(With an OAuth provider mail goes to oauth.server; smtp.server stays empty.)")
        if raw["oauth.client_id"] and preset.tenant != "consumers":
            click.echo(f"Admin consent (once per tenant): {_consent_url(raw)}")


def _consent_url(values: Mapping[str, SettingValue]) -> str:
    oauth = OAuthConfig(
        login_host=str(values["oauth.host"]),
        tenant=str(values["oauth.tenant"]),
        client_id=str(values["oauth.client_id"]),
        scope=str(values["oauth.scope"]),
    )
    return oauth.admin_consent_url


def _read_secret(key: str) -> str:
    if sys.stdin.isatty():
        return str(
            click.prompt(
                key, hide_input=True, confirmation_prompt=True, default="", show_default=False
            )
        )
    # Piped: one line, so `printf '%s\n' "$PW" | mailgate config set smtp.password -` works.
    return sys.stdin.readline().rstrip("\r\n")


def _key_list() -> str:
    # "\b" keeps click from re-wrapping the table in --help.
    return "\b\nKeys:\n" + "\n".join(f"  {k.name:<20} {k.help}" for k in KEYS.values())


@config_group.command("set", epilog=_key_list())
@click.argument("key")
@click.argument("value")
@click.pass_context
def set_command(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY to VALUE (an empty VALUE clears it). For smtp.password give VALUE as - and
    type it at the prompt or pipe it in, so it never sits in your shell history."""
    setting = get_key(key)
    if setting.secret:
        if value == "-":
            value = _read_secret(key)
        else:
            warning = (
                f"Warning: {key} given on the command line may be kept in your shell history; "
                f"next time use `mailgate config set {key} -`."
            )
            click.echo(warning, err=True)
    with open_store(ctx) as store:
        changes = store.set(key, value)
    _echo_changes(changes)
    if key == "smtp.server" and changes.get("provider") == "none":
        click.echo(
            "The provider is now none: only one SMTP server can be set, and typing a server "
            "name selects 'Not specified' (as on the device's control panel)."
        )


@config_group.command("provider")
@click.argument("name", type=click.Choice(list(PRESETS)))
@click.option("--client-id", help="Application (client) ID of your Entra ID app registration.")
@click.option(
    "--server", help="SMTP server host[:port] instead of the preset's (e.g. the simulator)."
)
@click.option("--host", help="Sign-in host[:port] instead of the preset's (e.g. the simulator).")
@click.option("--tenant", help="common, organizations, consumers, a tenant ID or domain.")
@click.option("--scope", help="Scopes to request instead of the preset's.")
@click.pass_context
def provider_command(
    ctx: click.Context,
    name: str,
    client_id: str | None,
    server: str | None,
    host: str | None,
    tenant: str | None,
    scope: str | None,
) -> None:
    """Choose the service provider NAME; OAuth presets fill the oauth.* settings."""
    with open_store(ctx) as store:
        changes = store.apply_provider(
            name, client_id=client_id, server=server, host=host, tenant=tenant, scope=scope
        )
        values = store.values()
    _echo_changes(changes)
    preset = PRESETS[name]
    if not preset.uses_oauth:
        if not values["smtp.server"]:
            click.echo("Next: set the server: `mailgate config set smtp.server HOST[:PORT]`.")
        return
    if not values["oauth.client_id"]:
        click.echo(
            f"Next: set your app's client ID: `mailgate config provider {name} --client-id <GUID>`."
        )
        return
    if preset.tenant != "consumers":
        click.echo(f"Next: a tenant admin grants consent once: {_consent_url(values)}")
    click.echo("Then sign in with the sending account: `mailgate login`.")


@config_group.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def export_command(ctx: click.Context, file: Path | None) -> None:
    """Write the settings as TOML to FILE (default: standard output). Secrets are left out."""
    with open_store(ctx) as store:
        text = export_toml(store.values(), header=f"mailgate settings from {store.data_dir}")
    if file is None:
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"Exported the settings to {file}.")
    click.echo(SECRETS_NOTE, err=True)


@config_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> None:
    """Read settings from a TOML FILE made by `config export`; all are checked before any is set."""
    incoming = parse_toml(file.read_text(encoding="utf-8"), str(file))
    with open_store(ctx) as store:
        changes = store.import_settings(incoming)
    click.echo(f"Imported {len(changes)} settings from {file}.")
    click.echo(SECRETS_NOTE)
