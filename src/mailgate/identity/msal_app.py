"""Building MSAL's PublicClientApplication and turning its failures into SignInProblems.

MSAL reports failures three ways: an error dict (RFC 6749 section 5.2 replies), an
exception from the HTTP layer (requests' exceptions, all OSError), and
``MsalServiceError`` for 5xx token replies or ``ValueError`` for bodies that are not JSON
and for failed tenant discovery. :func:`call_msal` folds all of them into
:class:`~mailgate.identity.errors.IdentityError` so callers handle one thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import msal
import msal.authority
import requests

from mailgate.config.model import OAuthConfig, TrustConfig
from mailgate.identity.errors import (
    IdentityError,
    SignInProblem,
    classify,
    network_problem,
    service_unavailable,
)
from mailgate.identity.http import build_session

T = TypeVar("T")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def login_hostname(login_host: str) -> str:
    """The host name of a "sign-in host" setting that may carry a port ("127.0.0.1:8443")."""
    return (urlsplit(f"https://{login_host}").hostname or login_host).lower()


def instance_discovery_setting(login_host: str) -> bool | None:
    """What to pass as MSAL's ``instance_discovery``.

    MSAL validates an authority by asking login.microsoftonline.com about any host it does
    not know. For Microsoft's own hosts (including 21Vianet's and the US Government's) the
    default is right. For any other host (the simulator, a test rig) that question would
    leave the network we were told to use, and the host is what the admin configured,
    so there is nothing to validate: turn it off and read the host's own metadata.
    """
    if login_hostname(login_host) in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS:
        return None
    return False


def build_app(
    oauth: OAuthConfig,
    session: requests.Session,
    cache: msal.SerializableTokenCache,
) -> msal.PublicClientApplication:
    """A PublicClientApplication for the configured cloud. Does network I/O (tenant discovery)."""

    def make() -> msal.PublicClientApplication:
        return msal.PublicClientApplication(
            oauth.client_id,
            authority=oauth.authority,
            http_client=session,
            token_cache=cache,
            instance_discovery=instance_discovery_setting(oauth.login_host),
        )

    return call_msal(make, oauth)


class SessionHolder:
    """The HTTPS session of one sign-in or token manager, made on first use, closable.

    Closing matters: an idle keep-alive TLS connection left open keeps the server side
    waiting for it (the simulator's shutdown, a proxy's connection slots).
    """

    def __init__(self, trust: TrustConfig, session: requests.Session | None = None) -> None:
        self._trust = trust
        self._given = session
        self._own: requests.Session | None = None

    def get(self) -> requests.Session:
        if self._given is not None:
            return self._given
        if self._own is None:
            self._own = build_session(self._trust)
        return self._own

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None


def _discovery_problem(exc: ValueError, oauth: OAuthConfig) -> SignInProblem:
    # MSAL wraps the failed .well-known/openid-configuration reply (e.g. AADSTS90002 for an
    # unknown tenant) in a generic ValueError; the reply's JSON is in the chained exception.
    chain: list[BaseException] = [exc]
    while chain[-1].__context__ is not None and len(chain) < 5:
        chain.append(chain[-1].__context__)
    for link in chain:
        found = _JSON_OBJECT.search(str(link))
        if found:
            try:
                reply = json.loads(found.group(0))
            except ValueError:
                continue
            if isinstance(reply, dict) and "error" in reply:
                return classify(reply, oauth)
    return service_unavailable("an answer that is not Microsoft's (not JSON)", oauth.login_host)


def problem_from_exception(exc: Exception, oauth: OAuthConfig) -> SignInProblem | None:
    """The SignInProblem for an exception MSAL raised, or None if it is not one of ours."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return service_unavailable(f"HTTP {exc.response.status_code}", oauth.login_host)
    if isinstance(exc, requests.RequestException):
        return network_problem(exc, oauth.login_host)
    if isinstance(exc, msal.exceptions.MsalServiceError):
        # MSAL raises this for 5xx token replies ("HTTP Error: 503").
        return service_unavailable(str(exc) or "an HTTP error", oauth.login_host)
    if isinstance(exc, ValueError):
        return _discovery_problem(exc, oauth)
    return None


def call_msal(fn: Callable[[], T], oauth: OAuthConfig) -> T:
    """Run an MSAL call, turning its exceptions into IdentityError."""
    try:
        return fn()
    except (requests.RequestException, msal.exceptions.MsalServiceError, ValueError) as exc:
        problem = problem_from_exception(exc, oauth)
        if problem is None:  # pragma: no cover - the except clause lists only known kinds
            raise
        raise IdentityError(problem) from None


def seconds(value: object, default: int) -> int:
    """A duration field of a reply: 21Vianet has sent `expires_in` as a string ("3599")."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return default
    return default
