"""The identity platform's error replies (AADSTS codes), worded as Microsoft words them.

Every failure of the simulated sign-in is an :class:`AadstsFailure`: a code from
:data:`CATALOG` plus the values its text needs. :meth:`AadstsFailure.body` renders the
JSON Microsoft's token endpoints send (SPEC.md "How Microsoft behaves")::

    {"error": "invalid_grant",
     "error_description": "AADSTS50173: ...\\r\\nTrace ID: ...\\r\\nCorrelation ID: ...\\r\\n...",
     "error_codes": [50173], "timestamp": "...", "trace_id": "...", "correlation_id": "...",
     "error_uri": "https://login.microsoftonline.com/error?code=50173"}

The texts come from replies seen in client logs and from Microsoft's error-code reference;
they drift over the years, so clients must classify by ``error`` and ``error_codes``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CatalogEntry:
    #: The OAuth 2.0 ``error`` field Microsoft sends with this code.
    error: str
    #: The text after "AADSTSnnnn: ", with ``str.format`` fields.
    text: str
    #: ``suberror`` where Microsoft adds one (MSAL reads it, e.g. ``consent_required``).
    suberror: str | None = None


CATALOG: dict[int, CatalogEntry] = {
    # -- consent ------------------------------------------------------------------------
    65001: CatalogEntry(
        "invalid_grant",
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}' named '{app_name}'. Send an interactive authorization request for this "
        "user and resource.",
        suberror="consent_required",
    ),
    90094: CatalogEntry("invalid_grant", "The grant requires admin permission."),
    90095: CatalogEntry(
        "invalid_grant",
        "Admin consent is required for the permissions requested by this application. "
        "An admin consent request may be sent to the admin.",
    ),
    # The admin-consent page answers a decline with access_denied; the device code flow
    # reports the same decline as authorization_declined (AadstsFailure.error overrides).
    65004: CatalogEntry("access_denied", "User declined to consent to access the app."),
    # -- policies -----------------------------------------------------------------------
    53003: CatalogEntry(
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not "
        "allow token issuance.",
        suberror="message_only",
    ),
    530032: CatalogEntry(
        "invalid_grant",
        "The tenant admin has configured a security policy that blocks this request. Check the "
        "security policies that are defined on the tenant level to determine if your request "
        "meets the policy requirements.",
    ),
    530035: CatalogEntry(
        "invalid_grant",
        "Access has been blocked by security defaults. This is due to the request using legacy "
        "auth or being deemed unsafe by security defaults policies. For more information, "
        "visit https://aka.ms/security-defaults",
    ),
    # -- application registration -------------------------------------------------------
    700016: CatalogEntry(
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found in the directory "
        "'{directory}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You may have "
        "sent your authentication request to the wrong tenant.",
    ),
    7000218: CatalogEntry(
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    50194: CatalogEntry(
        "invalid_request",
        "Application '{client_id}'({app_name}) is not configured as a multi-tenant "
        "application. Usage of the /common endpoint is not supported for such applications "
        "created after '10/15/2018'. Use a tenant-specific endpoint or configure the "
        "application to be multi-tenant.",
    ),
    70011: CatalogEntry(
        "invalid_scope",
        "The provided value for the input parameter 'scope' isn't valid. The scope {scope} "
        "isn't valid.",
    ),
    # -- the account --------------------------------------------------------------------
    50034: CatalogEntry(
        "invalid_grant",
        "The user account {upn} does not exist in the {directory} directory. To sign into this "
        "application, the account must be added to the directory.",
    ),
    50076: CatalogEntry(
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must use multi-factor authentication to access '{resource_id}'.",
        suberror="basic_action",
    ),
    50079: CatalogEntry(
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must enroll in multi-factor authentication to access "
        "'{resource_id}'.",
        suberror="basic_action",
    ),
    50057: CatalogEntry("invalid_grant", "The user account is disabled."),
    50053: CatalogEntry(
        "invalid_grant",
        "The account is locked, you've tried to sign in too many times with an incorrect user "
        "ID or password.",
    ),
    90002: CatalogEntry(
        "invalid_request",
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    ),
    # -- refresh tokens -----------------------------------------------------------------
    700082: CatalogEntry(
        "invalid_grant",
        "The refresh token has expired due to inactivity. The token was issued on {issued} and "
        "was inactive for 90.00:00:00.",
        suberror="bad_token",
    ),
    50173: CatalogEntry(
        "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        "The user might have changed or reset their password. The grant was issued on "
        "'{issued}' and the TokensValidFrom date (before which tokens are not valid) for this "
        "user is '{valid_from}'.",
    ),
    70008: CatalogEntry(
        "invalid_grant",
        "The provided authorization code or refresh token has expired due to inactivity. Send "
        "a new interactive authorization request for this user and resource.",
    ),
    70000: CatalogEntry(
        "invalid_grant",
        "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
    ),
    # -- the request itself ---------------------------------------------------------------
    900144: CatalogEntry(
        "invalid_request",
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    70003: CatalogEntry(
        "unsupported_grant_type",
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
    90033: CatalogEntry(
        "temporarily_unavailable", "A transient error has occurred. Please try again."
    ),
    # -- device code polling (RFC 8628 section 3.5 errors, Microsoft's codes) -------------
    70016: CatalogEntry(
        "authorization_pending",
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    ),
    70018: CatalogEntry(
        "bad_verification_code",
        "Invalid verification code due to User typing in wrong user code for device code flow. "
        "Authorization is not approved.",
    ),
    # Microsoft documents 70019 for an expired device code; clients have logged 70020 since
    # 2022, which the simulator sends.
    70019: CatalogEntry(
        "expired_token", "Verification code expired. Have the user retry the sign-in."
    ),
    70020: CatalogEntry(
        "expired_token",
        "The provided value for the input parameter 'device_code' is not valid. This device "
        "code has expired.",
    ),
}

#: Conditional Access failures name the policies that applied in a claims challenge.
_CA_CLAIMS = '{"access_token":{"capolids":{"values":["5a3b9c1e-0f6d-4e2a-9b7c-8d1e2f3a4b5c"]}}}'


def timestamp(now: float) -> str:
    """Microsoft's "2026-06-01 12:00:00Z" timestamps."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))


def grant_timestamp(moment: float) -> str:
    """Dates inside texts, with .NET's seven fractional digits: 2021-07-19T14:01:41.1468970Z."""
    whole = int(moment)
    fraction = int((moment - whole) * 10_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{fraction:07d}Z"


def is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class AadstsFailure:
    """One failed request: an AADSTS code, the values its text needs, the HTTP status."""

    code: int
    params: dict[str, str] = field(default_factory=dict)
    #: Overrides the catalog's ``error`` where one code appears under two OAuth errors.
    error: str | None = None
    status: int = 400
    #: Overrides the catalog's text where one code comes with two texts (70000).
    text: str | None = None

    @property
    def entry(self) -> CatalogEntry:
        return CATALOG[self.code]

    @property
    def oauth_error(self) -> str:
        return self.error or self.entry.error

    @property
    def message(self) -> str:
        """The "AADSTSnnnn: text" line Microsoft's pages show and error_description begins with."""
        text = self.text if self.text is not None else self.entry.text
        return f"AADSTS{self.code}: {text.format(**self.params)}"

    def body(self, *, now: float, login_host: str, correlation_id: str | None) -> dict[str, object]:
        """The JSON body; the correlation ID echoes the client's ``client-request-id``."""
        trace_id = str(uuid.uuid4())
        if correlation_id is None or not is_guid(correlation_id):
            correlation_id = str(uuid.uuid4())
        stamp = timestamp(now)
        body: dict[str, object] = {
            "error": self.oauth_error,
            "error_description": (
                f"{self.message}\r\nTrace ID: {trace_id}\r\n"
                f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
            ),
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://{login_host}/error?code={self.code}",
        }
        if self.entry.suberror is not None:
            body["suberror"] = self.entry.suberror
        if self.code == 53003:
            body["claims"] = _CA_CLAIMS
        return body


_DECLINED_TEXT = (
    "The request was denied because one or more scopes requested are unauthorized or expired. "
    "The user must first sign in and grant the client application access to the requested scope."
)


def declined() -> AadstsFailure:
    """A device-code poll after the person declined: ``authorization_declined`` with
    AADSTS70000 as Microsoft answers today (it has sent 65004 before; ``error`` decides)."""
    return AadstsFailure(70000, error="authorization_declined", text=_DECLINED_TEXT)


def public_client_refused() -> AadstsFailure:
    """ "Allow public client flows" is off: Entra ID wants a client secret. RFC 6749
    section 5.2: invalid_client comes with HTTP 401, and Microsoft does so."""
    return AadstsFailure(7000218, status=401)
