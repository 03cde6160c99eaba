"""An authenticated upstream SMTP session, the way every sender in mailgate opens one:
`mailgate send`, `mailgate doctor` and the gateway's delivery workers."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from mailgate.config.model import Settings
from mailgate.config.store import Store
from mailgate.identity.tokens import AccessToken, TokenManager
from mailgate.submission.client import (
    Credentials,
    PasswordCredentials,
    SubmissionClient,
    XOAuth2Credentials,
)
from mailgate.submission.errors import SubmissionError
from mailgate.submission.replies import token_may_be_stale

log = logging.getLogger(__name__)


@dataclass
class Upstream:
    """What a sender needs: settings, the store (for the SMTP password) and the tokens."""

    store: Store
    settings: Settings
    tokens: TokenManager | None
    primary_address: str | None = None
    _sent_token: AccessToken | None = field(default=None, init=False, repr=False)

    async def credentials(self) -> Credentials | None:
        if self.tokens is not None:
            token = await self.tokens.access_token()
            self._sent_token = token
            return XOAuth2Credentials(token.upn, token.token)
        username = self.settings.outbound.username
        if not username:
            return None
        return PasswordCredentials(username, self.store.secret("smtp.password") or "")

    async def open(self) -> SubmissionClient:
        """Connect, secure and authenticate. Raises SubmissionError or IdentityError."""
        client = SubmissionClient(primary_address=self.primary_address)
        try:
            await client.connect(self.settings.outbound, self.settings.trust)
            credentials = await self.credentials()
            if credentials is not None:
                await self._authenticate(client, credentials)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close()
            raise
        return client

    async def _authenticate(self, client: SubmissionClient, credentials: Credentials) -> None:
        try:
            await client.authenticate(credentials)
        except SubmissionError as error:
            # A 535 to a token we thought valid: it may have expired or been revoked on the
            # server's side. Refresh once and try once more; a second refusal is final (hold).
            retry = (
                self.tokens is not None
                and isinstance(credentials, XOAuth2Credentials)
                and error.reply is not None
                and token_may_be_stale(error.reply)
            )
            if not retry or self.tokens is None:
                raise
            log.info(
                "%s refused the access token (%s); refreshing it once",
                self.settings.outbound.server,
                error.reply.enhanced if error.reply else "",
            )
            # Name the refused token: if the refresh fails for a while (503, timeout), the
            # failure is temporary (mail deferred), not "sign in again" (mail held).
            token = await self.tokens.refresh(self._sent_token)
            self._sent_token = token
            if not client.connected:  # some servers hang up after a failed AUTH
                await client.connect(self.settings.outbound, self.settings.trust)
            await client.authenticate(XOAuth2Credentials(token.upn, token.token))
