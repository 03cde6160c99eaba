"""Sign-in and tokens: device code flow, token cache and refresh, identity-platform errors.

What other modules use::

    DeviceCodeSignIn(oauth, trust, store, lock_path=..., on_event=...).start() / .wait(code)
    TokenManager(oauth, trust, store, lock_path).access_token()  -> AccessToken(token, upn, ...)
    classify(reply, oauth) -> SignInProblem;  SignInError / TokenError carry .problem
    build_session(trust) -> requests.Session;  ssl_context(trust) -> ssl.SSLContext
"""

from mailgate.identity.errors import (
    IdentityError,
    SignInError,
    SignInProblem,
    TokenError,
    classify,
)
from mailgate.identity.http import build_session
from mailgate.identity.signin import (
    CodeIssued,
    DeviceCode,
    DeviceCodeSignIn,
    Pending,
    SignedIn,
    SignInEvent,
    SignInFailed,
    SignInResult,
)
from mailgate.identity.store import MemoryTokenCacheStore, TokenCacheStore
from mailgate.identity.tokens import (
    AccessToken,
    TokenHealth,
    TokenManager,
    keepalive_due,
    refresh_due,
    resign_in_deadline,
    token_health,
)
from mailgate.trust import CaBundleError, ssl_context

__all__ = [
    "AccessToken",
    "CaBundleError",
    "CodeIssued",
    "DeviceCode",
    "DeviceCodeSignIn",
    "IdentityError",
    "MemoryTokenCacheStore",
    "Pending",
    "SignInError",
    "SignInEvent",
    "SignInFailed",
    "SignInProblem",
    "SignInResult",
    "SignedIn",
    "TokenCacheStore",
    "TokenError",
    "TokenHealth",
    "TokenManager",
    "build_session",
    "classify",
    "keepalive_due",
    "refresh_due",
    "resign_in_deadline",
    "ssl_context",
    "token_health",
]
