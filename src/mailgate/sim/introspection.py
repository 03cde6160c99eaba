"""OAuth 2.0 token introspection (RFC 7662) for servers that are not Exchange.

Exchange checks a token itself; an RFC 4954 server such as Dovecot (``passdb oauth2`` with
``introspection_mode = post``) asks the issuer instead: ``POST token=<access token>`` and
reads ``active`` and the user name from the JSON answer. With this endpoint the simulated
identity platform can stand behind any such server in the tests, so a token expired or
revoked here is refused there too.

Microsoft has no such endpoint; it lives under ``/_sim/``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailgate.sim.state import SimState

PATH = "/_sim/introspect"


def introspect(state: SimState, token: str, now: float) -> dict[str, Any]:
    """RFC 7662 section 2.2: ``{"active": false}`` and nothing else for a token that is
    unknown, expired or revoked; the token's facts when it is active."""
    grant = state.lookup_access_token(token) if token else None
    if grant is None or grant.expires_at <= now:
        return {"active": False}
    return {
        "active": True,
        "scope": " ".join(grant.scopes),
        "client_id": grant.client_id,
        "username": grant.upn,
        "token_type": "Bearer",
        "exp": int(grant.expires_at),
        "sub": grant.upn,
        "aud": state.profile.smtp_resource,
        "iss": f"https://{state.profile.login_host}/{state.profile.tenant_id}/v2.0",
    }


def introspection_route(state: SimState) -> Route:
    async def endpoint(request: Request) -> Response:
        form = await request.form()
        token = form.get("token")
        if not isinstance(token, str) or not token:
            # RFC 7662 section 2.1: the token parameter is required.
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return JSONResponse(
            introspect(state, token, state.clock()), headers={"Cache-Control": "no-store"}
        )

    return Route(PATH, endpoint, methods=["POST"])
