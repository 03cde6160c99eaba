"""The identity-platform error catalog: what an AADSTS reply means and what the admin does.

Theory of operation. Microsoft answers a failed device-code poll or refresh with HTTP 400
and JSON (RFC 6749 section 5.2, RFC 8628 section 3.5)::

    {"error": "invalid_grant", "error_description": "AADSTS70008: ... \\r\\nTrace ID: ...",
     "error_codes": [70008], "suberror": "bad_token", "trace_id": ..., "correlation_id": ...}

The description texts drift between clouds and over the years. Microsoft documents that
clients react to the ``error`` field and that ``error_codes`` are for diagnostics, and the
number it sends with one ``error`` varies (a declined sign-in has come with AADSTS70000 and
65004). So :func:`classify` decides by the device-flow ``error`` values of RFC 8628 section
3.5 first, then by ``error_codes`` (which tell apart the many causes of ``invalid_grant``),
then an ``AADSTSnnnn`` in the description, then the other ``error`` strings, and only shows
the description's first line when nothing matched. The result is a
:class:`SignInProblem`: a title, what happened in plain words, what to do, and two flags
the token manager acts on (``retryable``: try again later as is; ``needs_sign_in``: the
stored sign-in is unusable, a person must sign in again).

Everything here is pure; nothing here ever sees a token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mailgate.config.model import OAuthConfig
from mailgate.errors import MailgateError
from mailgate.texts import N_


@dataclass(frozen=True)
class SignInProblem:
    """One sign-in or refresh failure, explained for an administrator."""

    #: "AADSTS65001" when Microsoft gave a number, else the OAuth error ("authorization_declined")
    #: or one of ours ("network", "service_unavailable", "not_signed_in", "cancelled").
    code: str
    title: str
    explanation: str
    what_to_do: str
    retryable: bool
    needs_sign_in: bool
    #: The OAuth `error` field as received ("" when the failure was not an OAuth reply).
    error: str = ""
    #: Microsoft's ids, for a support case; never secrets.
    trace_id: str | None = None
    correlation_id: str | None = None
    #: The catalog's texts before formatting (title, explanation, what to do) and the values
    #: they were formatted with, so a reader's language can render them again (console).
    texts: tuple[str, str, str] | None = None
    params: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.code}: {self.title}. {self.explanation} {self.what_to_do}"


class IdentityError(MailgateError):
    """A failure of sign-in or token refresh; ``problem`` says what to do."""

    def __init__(self, problem: SignInProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class SignInError(IdentityError):
    """The device code sign-in did not complete."""


class TokenError(IdentityError):
    """No valid access token could be had."""


@dataclass(frozen=True)
class _Entry:
    title: str
    explanation: str
    #: May use {consent_url}, {client_id}, {tenant}, {login_host}.
    what_to_do: str
    retryable: bool = False
    needs_sign_in: bool = False


_SIGN_IN_AGAIN = N_("Run the sign-in again (`mailgate login` or the console's Sign-in page).")
_SIGN_IN_AGAIN_PROMPTLY = N_(
    "Run the sign-in again (`mailgate login` or the console's Sign-in page). "
    "Enter the new code promptly."
)
_SIGN_IN_AGAIN_APPROVE = N_(
    "Run the sign-in again (`mailgate login` or the console's Sign-in page). "
    "Approve it with the account that sends the mail."
)
_CONSENT_TODO = N_(
    "A tenant administrator must grant consent once by opening {consent_url} and "
    "accepting, then sign in again."
)
_CA_TODO = N_(
    "In the Entra admin center, under Protection > Conditional Access, find the policy named "
    "in the sign-in log (Monitoring > Sign-in logs, filter by this application) and exclude "
    "the signing-in account or this application from it, or allow the device code flow "
    "(Conditions > Authentication flows > Device code flow). Then sign in again."
)

# Why each code is here: Microsoft's identity-platform error reference (errors an admin
# meets, polling, refresh) plus codes seen from real clients. Keyed by the number in `error_codes`.
_BY_CODE: dict[int, _Entry] = {
    # RFC 8628 section 3.5 polling results, with Microsoft's numbers.
    70016: _Entry(
        N_("Waiting for sign-in"),
        N_("The code has not been entered and approved yet."),
        N_("Open the verification page, enter the code and sign in with the sending account."),
        retryable=True,
    ),
    70018: _Entry(
        N_("Invalid device code"),
        N_("Microsoft did not recognise the device code of this sign-in."),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    70019: _Entry(
        N_("The code expired"),
        N_("Nobody entered and approved the code before it expired."),
        _SIGN_IN_AGAIN_PROMPTLY,
        needs_sign_in=True,
    ),
    70020: _Entry(
        N_("The code expired"),
        N_("Nobody entered and approved the code before it expired."),
        _SIGN_IN_AGAIN_PROMPTLY,
        needs_sign_in=True,
    ),
    # Refresh token no longer good (RFC 6749 section 5.2 invalid_grant).
    700082: _Entry(
        N_("Sign-in expired from inactivity"),
        N_("The stored sign-in was not used for 90 days, so Microsoft expired it."),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    50173: _Entry(
        N_("Sign-in revoked"),
        N_(
            "The stored sign-in was revoked, usually because the account's password was changed "
            "or an administrator revoked its sessions."
        ),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    70008: _Entry(
        N_("Sign-in expired or revoked"),
        N_("The stored refresh token has expired or was revoked."),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    70000: _Entry(
        N_("Sign-in no longer valid"),
        N_("Microsoft refused the stored refresh token (invalid grant)."),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    900144: _Entry(
        N_("Request without a required parameter"),
        N_(
            "The token request did not contain the parameter '{parameter}', which Microsoft "
            "requires (for example the scope on every refresh)."
        ),
        N_(
            "Check the settings that fill it (client ID, scope, tenant: `mailgate config show`); "
            "if they are set, this is a mailgate defect: report it with the trace ID. Signing in "
            "again may help."
        ),
    ),
    500011: _Entry(
        N_("Scope from another cloud"),
        N_(
            "The scope names the resource {resource}{resource_cloud}, which the tenant at "
            "{login_host}{login_cloud} does not know."
        ),
        N_(
            "Set the scope to the SMTP.Send scope of the cloud you sign in to{expected_scope}, "
            "or choose the provider preset of your cloud (`mailgate config provider ...`), then "
            "sign in again."
        ),
    ),
    # Consent.
    65001: _Entry(
        N_("Consent required"),
        N_("The application has not been granted permission to send mail as this account."),
        _CONSENT_TODO,
        needs_sign_in=True,
    ),
    90094: _Entry(
        N_("Administrator consent required"),
        N_("The tenant allows only administrators to grant applications access."),
        _CONSENT_TODO,
    ),
    90095: _Entry(
        N_("Administrator consent required"),
        N_("The tenant's settings require an administrator to approve this application."),
        _CONSENT_TODO,
    ),
    65004: _Entry(
        N_("Consent declined"),
        N_("The person signing in declined to give the application the permissions it asks for."),
        N_(
            "Sign in again and accept the permissions, or have an administrator grant consent at "
            "{consent_url}."
        ),
        needs_sign_in=True,
    ),
    # Conditional Access and security policy.
    53003: _Entry(
        N_("Blocked by Conditional Access"),
        N_(
            "A Conditional Access policy blocked this sign-in; many tenants block the device "
            "code flow this way."
        ),
        _CA_TODO,
    ),
    530032: _Entry(
        N_("Blocked by a tenant security policy"),
        N_("A security policy of the tenant blocked this sign-in."),
        _CA_TODO,
    ),
    530035: _Entry(
        N_("Blocked by security defaults"),
        N_("The tenant's security defaults blocked this sign-in."),
        N_(
            "Security defaults cannot exclude a flow. A Global Administrator can turn security "
            "defaults off (Entra admin center > Overview > Properties > Manage security defaults) "
            "and use Conditional Access instead, excluding this application or the device code "
            "flow from the blocking policy. Then sign in again."
        ),
    ),
    # App registration.
    700016: _Entry(
        N_("Application not found"),
        N_(
            "No application with client ID {client_id} exists in the directory that was "
            "signed in to."
        ),
        N_(
            "Check the client ID (Entra admin center > App registrations > Overview > "
            "Application (client) ID) and the tenant ({tenant}); a single-tenant app must be "
            "used with its own tenant ID or domain."
        ),
    ),
    7000218: _Entry(
        N_("Public client flows not allowed"),
        N_("The app registration does not allow the device code flow."),
        N_(
            'Turn on "Allow public client flows" in the app registration\'s Authentication page '
            "(Entra admin center > App registrations > the app > Authentication > Advanced "
            "settings), save, then sign in again."
        ),
    ),
    50194: _Entry(
        N_("Single-tenant application used with 'common'"),
        N_(
            "The application is registered for one organisation only, so it cannot sign in "
            "through the 'common' endpoint."
        ),
        N_(
            "Set the tenant to your tenant ID or domain (e.g. contoso.onmicrosoft.com) instead "
            "of 'common', or make the app registration multi-tenant."
        ),
    ),
    70011: _Entry(
        N_("Invalid scope"),
        N_("Microsoft refused the requested scope."),
        N_(
            "Check the scope setting: it must contain the SMTP.Send scope of your cloud, e.g. "
            "https://outlook.office.com/SMTP.Send, and the app registration must list "
            "SMTP.Send, offline_access, openid and email as delegated permissions."
        ),
    ),
    50076: _Entry(
        N_("Multi-factor authentication required"),
        N_("The account must complete multi-factor authentication."),
        N_("Sign in again and complete the second factor on the verification page."),
        needs_sign_in=True,
    ),
    50079: _Entry(
        N_("Multi-factor authentication registration required"),
        N_("The account must register for multi-factor authentication first."),
        N_("Have the account holder register MFA at https://aka.ms/mfasetup, then sign in again."),
        needs_sign_in=True,
    ),
    50057: _Entry(
        N_("Account disabled"),
        N_("The account that signed in is disabled in the directory."),
        N_("Enable the account (Entra admin center > Users) or sign in with another account."),
        needs_sign_in=True,
    ),
    50053: _Entry(
        N_("Account locked"),
        N_("The account is locked after too many failed sign-in attempts."),
        N_("Wait for the lockout to end (or have an administrator unlock it), then sign in again."),
        needs_sign_in=True,
    ),
    90002: _Entry(
        N_("Tenant not found"),
        N_("The tenant '{tenant}' does not exist at {login_host}."),
        N_(
            "Check the tenant setting (a tenant ID, a domain, 'common' or 'consumers') and that "
            "the sign-in host belongs to your cloud."
        ),
    ),
}

# Fallbacks by OAuth `error` (RFC 6749 section 5.2, RFC 8628 section 3.5).
_BY_ERROR: dict[str, int | _Entry] = {
    "authorization_pending": 70016,
    "slow_down": 70016,
    "bad_verification_code": 70018,
    "expired_token": 70019,
    "authorization_declined": _Entry(
        N_("Sign-in declined"),
        N_("The person at the verification page declined the sign-in."),
        _SIGN_IN_AGAIN_APPROVE,
        needs_sign_in=True,
    ),
    "access_denied": _Entry(
        N_("Sign-in declined"),
        N_("The sign-in was declined or denied."),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    "invalid_grant": 70000,
    "consent_required": 65001,
    "interaction_required": _Entry(
        N_("Interactive sign-in required"),
        N_("Microsoft needs the account to sign in again interactively."),
        _SIGN_IN_AGAIN,
        needs_sign_in=True,
    ),
    "invalid_scope": 70011,
    "invalid_resource": 500011,
    "unauthorized_client": 700016,
    "invalid_client": 7000218,
    "temporarily_unavailable": _Entry(
        N_("Microsoft's sign-in service is unavailable"),
        N_("The identity platform answered that it is temporarily unavailable."),
        N_("Nothing to change; mailgate tries again later."),
        retryable=True,
    ),
    "server_error": _Entry(
        N_("Microsoft's sign-in service failed"),
        N_("The identity platform reported an internal error."),
        N_("Nothing to change; mailgate tries again later."),
        retryable=True,
    ),
}

_AADSTS = re.compile(r"\bAADSTS(\d{4,})\b")
# Long base64url-like runs: never echo anything that could be a token or device code.
_TOKENISH = re.compile(r"[A-Za-z0-9_\-.~+/=]{40,}")


def _codes(result: Mapping[str, Any]) -> list[int]:
    codes: list[int] = []
    raw = result.get("error_codes")
    if isinstance(raw, list):
        for value in raw:
            try:
                codes.append(int(value))
            except (TypeError, ValueError):
                continue
    found = _AADSTS.search(str(result.get("error_description") or ""))
    if found:
        codes.append(int(found.group(1)))
    return codes


def first_line(description: str) -> str:
    """The description without Microsoft's "\\r\\nTrace ID: ..." tail, tokens masked."""
    line = description.strip().splitlines()[0] if description.strip() else ""
    return _TOKENISH.sub("[...]", line).strip()


#: Clouds by the resource of their SMTP.Send scope and by their sign-in host (presets).
_CLOUD_OF_RESOURCE = {
    "https://outlook.office.com": "worldwide",
    "https://outlook.office365.com": "worldwide",
    "https://outlook.office365.us": "GCC High",
    "https://partner.outlook.cn": "21Vianet",
}
_CLOUD_OF_HOST = {
    "login.microsoftonline.com": ("worldwide", "https://outlook.office.com/SMTP.Send"),
    "login.microsoftonline.us": ("GCC High", "https://outlook.office365.us/SMTP.Send"),
    "login.partner.microsoftonline.cn": ("21Vianet", "https://partner.outlook.cn/SMTP.Send"),
    "login.chinacloudapi.cn": ("21Vianet", "https://partner.outlook.cn/SMTP.Send"),
}
_RESOURCE = re.compile(r"resource principal named (\S+?)(?:/SMTP\.Send)?\s+was not found", re.I)
_PARAMETER = re.compile(r"following parameter:\s*'([^']+)'", re.I)


def _details(description: str, oauth: OAuthConfig | None) -> dict[str, str]:
    """Values only the description has: the resource of AADSTS500011, the parameter of
    AADSTS900144, and the cloud each belongs to (the admin's hint for a mixed-up scope)."""
    resource = _RESOURCE.search(description)
    parameter = _PARAMETER.search(description)
    named = resource.group(1).rstrip("/.") if resource else ""
    if not named and oauth is not None:
        named = next((s.rsplit("/", 1)[0] for s in oauth.scope.split() if "/" in s), "")
    cloud = _CLOUD_OF_RESOURCE.get(named.lower())
    host_cloud = _CLOUD_OF_HOST.get(oauth.login_host.lower()) if oauth else None
    return {
        "resource": named or "(see the trace ID)",
        "resource_cloud": f" (the {cloud} cloud's)" if cloud else "",
        "login_cloud": f" (the {host_cloud[0]} cloud)" if host_cloud else "",
        "expected_scope": f": {host_cloud[1]}" if host_cloud else "",
        "parameter": parameter.group(1) if parameter else "scope",
    }


def _values(oauth: OAuthConfig | None, description: str = "") -> dict[str, str]:
    return {
        "consent_url": oauth.admin_consent_url if oauth else "the admin-consent link",
        "client_id": oauth.client_id if oauth else "(the configured client ID)",
        "tenant": oauth.tenant if oauth else "(the configured tenant)",
        "login_host": oauth.login_host if oauth else "the sign-in host",
        **_details(description, oauth),
    }


#: RFC 8628 section 3.5: what a device-flow poll answers. These decide, whatever number
#: comes with them (Microsoft: "react to error, error_codes are for diagnostics").
_DECISIVE_ERRORS = frozenset(
    {
        "authorization_pending",
        "slow_down",
        "authorization_declined",
        "bad_verification_code",
        "expired_token",
    }
)


def _lookup(codes: list[int], error: str, suberror: str) -> tuple[int | None, _Entry | None]:
    if error in _DECISIVE_ERRORS:
        decisive = _BY_ERROR[error]
        if isinstance(decisive, int):
            return (codes[0] if codes else decisive), _BY_CODE[decisive]
        return (codes[0] if codes else None), decisive
    for code in codes:
        if code in _BY_CODE:
            return code, _BY_CODE[code]
    for key in (suberror, error):
        found = _BY_ERROR.get(key)
        if isinstance(found, int):
            return (codes[0] if codes else found), _BY_CODE[found]
        if found is not None:
            return (codes[0] if codes else None), found
    return (codes[0] if codes else None), None


def classify(result: Mapping[str, Any], oauth: OAuthConfig | None = None) -> SignInProblem:
    """Explain an identity-platform error reply (an MSAL result dict or the HTTP JSON)."""
    error = str(result.get("error") or "")
    suberror = str(result.get("suberror") or "")
    description = str(result.get("error_description") or "")
    code, entry = _lookup(_codes(result), error, suberror)
    shown_code = f"AADSTS{code}" if code is not None else (error or "unknown_error")
    ids = {
        "trace_id": _str_or_none(result.get("trace_id")),
        "correlation_id": _str_or_none(result.get("correlation_id")),
    }
    if entry is None:
        said = first_line(description) or error or "no details"
        return _problem(
            shown_code,
            (
                N_("Sign-in failed"),
                N_("Microsoft answered: {said}"),
                N_(
                    "Check the settings and try again; if it persists, look the code up at "
                    "https://login.microsoftonline.com/error and keep the trace ID for a "
                    "support case."
                ),
            ),
            {"said": said},
            retryable=False,
            needs_sign_in=error == "invalid_grant",
            error=error,
            **ids,
        )
    return _problem(
        shown_code,
        (entry.title, entry.explanation, entry.what_to_do),
        _values(oauth, description),
        retryable=entry.retryable,
        needs_sign_in=entry.needs_sign_in,
        error=error,
        **ids,
    )


def _problem(
    code: str, texts: tuple[str, str, str], params: dict[str, str], **rest: Any
) -> SignInProblem:
    """A problem with its texts formatted in English and kept, unformatted, for the console."""
    title, explanation, what_to_do = (text.format(**params) for text in texts)
    return SignInProblem(code, title, explanation, what_to_do, texts=texts, params=params, **rest)


def holds_mail(problem: SignInProblem) -> bool:
    """Should mail wait for an administrator (held) rather than be retried (deferred)?

    Only failures that pass by themselves (network, a 5xx, "temporarily unavailable") are
    retried. A refusal that needs a person - a dead sign-in, but also a configuration fault
    such as Conditional Access on refresh (53003), public client flows off (7000218) or an
    unknown client ID (700016) - holds the mail with the fix, not "cannot reach the server".
    """
    return problem.needs_sign_in or not problem.retryable


def _str_or_none(value: object) -> str | None:
    return str(value) if value else None


def network_problem(exc: BaseException, host: str) -> SignInProblem:
    """The identity platform could not be reached (DNS, TCP, TLS, proxy, timeout)."""
    kind = type(exc).__name__
    tls = "SSL" in kind or "certificate" in str(exc).lower()
    todo = (
        N_(
            "The server's certificate was not trusted: if a TLS-inspecting proxy is in the "
            "way, set the extra CA bundle setting to its CA certificate (PEM)."
        )
        if tls
        else N_("Check DNS, the firewall and the HTTPS proxy setting; mailgate tries again later.")
    )
    return _problem(
        "network",
        (
            N_("Cannot reach {host}"),
            N_("The connection to the sign-in host failed ({kind})."),
            todo,
        ),
        {"host": host, "kind": kind},
        retryable=True,
        needs_sign_in=False,
    )


def service_unavailable(status: str, host: str) -> SignInProblem:
    """The identity platform answered with a 5xx or something that was not JSON."""
    return _problem(
        "service_unavailable",
        (
            N_("Microsoft's sign-in service is unavailable"),
            N_("{host} answered {status}."),
            N_("Nothing to change; mailgate tries again later."),
        ),
        {"host": host, "status": status},
        retryable=True,
        needs_sign_in=False,
    )


#: mailgate's own codes after which only a new sign-in helps.
_LOCAL_NEEDS_SIGN_IN = frozenset({"not_signed_in", "expired_token"})


def code_needs_sign_in(code: str | None) -> bool:
    """Whether a stored problem code (an account's last refresh error) means the sign-in is
    dead: the catalog's answer for Microsoft's numbers, ours for mailgate's own codes."""
    if code is None:
        return False
    if code in _LOCAL_NEEDS_SIGN_IN:
        return True
    number = code.removeprefix("AADSTS")
    found = int(number) if number.isdigit() else _BY_ERROR.get(code)
    entry = _BY_CODE.get(found) if isinstance(found, int) else found
    return entry is not None and entry.needs_sign_in


def catalog_texts(code: str) -> tuple[str, str, str] | None:
    """The catalog's unformatted texts for a stored code ("AADSTS70000", "invalid_grant")."""
    number = code.removeprefix("AADSTS")
    found = int(number) if number.isdigit() else _BY_ERROR.get(code)
    entry = _BY_CODE.get(found) if isinstance(found, int) else found
    if entry is None:
        return None
    return entry.title, entry.explanation, entry.what_to_do


def local_problem(code: str, title: str, explanation: str, what_to_do: str) -> SignInProblem:
    """A failure decided by mailgate itself (not signed in, cancelled, expired locally)."""
    needs = code in _LOCAL_NEEDS_SIGN_IN
    texts = (title, explanation, what_to_do)
    return SignInProblem(code, *texts, retryable=False, needs_sign_in=needs, texts=texts, params={})


def not_signed_in() -> SignInProblem:
    return local_problem(
        "not_signed_in",
        N_("Not signed in"),
        N_("No account is signed in, or its stored sign-in is missing."),
        _SIGN_IN_AGAIN,
    )
