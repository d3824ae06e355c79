"""Signing in from the page with the hospital's identity provider: the OIDC authorization code
flow with PKCE (RFC 7636, S256), the API as the client.

``start`` remembers a one-time ``state`` with its code verifier and nonce and sends the browser to
the provider; ``finish`` takes the code back at the redirect URL, trades it (with the verifier) at
the token endpoint, checks the ID token like any bearer token (signature, issuer, audience =
client id, expiry) plus its nonce, and hands the ID token to the page in the URL fragment (never
sent to a server, never in a log). The page then sends it as its bearer token until it expires.

Pending sign-ins live in this process's memory for ``LOGIN_SECONDS``: an API run as several
processes behind a balancer needs sticky sessions for the few seconds of a sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from triage.settings import Settings
from worklist.oidc import TokenVerifier

LOGIN_SECONDS = 600.0
MAX_PENDING = 1000


class LoginRefused(ValueError):
    """The sign-in cannot go on; the message says why (shown to the user, audited)."""


@dataclass(frozen=True)
class _Pending:
    verifier: str
    nonce: str
    started: float


def challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class LoginFlows:
    """Authorization code flows in progress, and the provider's endpoints (discovered once)."""

    def __init__(self, settings: Settings, tokens: TokenVerifier) -> None:
        self._settings = settings
        self._tokens = tokens
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._endpoints: dict[str, str] | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.oidc_enabled and self._settings.oidc_redirect_url is not None

    def _client_id(self) -> str:
        return self._settings.oidc_client_id or str(self._settings.oidc_audience)

    def endpoints(self) -> dict[str, str]:
        if self._endpoints is None:
            issuer = str(self._settings.oidc_issuer).rstrip("/")
            found = self._get_json(f"{issuer}/.well-known/openid-configuration")
            endpoints = {k: str(found[k]) for k in ("authorization_endpoint", "token_endpoint")}
            if not all(url.startswith("https://") for url in endpoints.values()):
                raise LoginRefused("the identity provider's endpoints are not https")
            self._endpoints = endpoints
        return self._endpoints

    def _get_json(self, url: str, data: bytes | None = None) -> Any:
        request = urllib.request.Request(url, data=data)  # noqa: S310 - https, checked
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        with urllib.request.urlopen(request, timeout=10, context=self._tokens.context) as response:  # noqa: S310
            return json.load(response)

    def start(self) -> str:
        """A new sign-in: the provider's authorization URL to send the browser to."""
        verifier, state, nonce = (
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
        )
        now = time.monotonic()
        with self._lock:
            for old in [k for k, p in self._pending.items() if now - p.started > LOGIN_SECONDS]:
                del self._pending[old]
            if len(self._pending) >= MAX_PENDING:
                raise LoginRefused("too many sign-ins in progress; try again in a few minutes")
            self._pending[state] = _Pending(verifier, nonce, now)
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self._client_id(), "scope": "openid profile",
            "redirect_uri": self._settings.oidc_redirect_url, "state": state, "nonce": nonce,
            "code_challenge": challenge(verifier), "code_challenge_method": "S256",
        })  # fmt: skip
        return f"{self.endpoints()['authorization_endpoint']}?{query}"

    def finish(self, state: str, code: str) -> tuple[str, dict[str, Any]]:
        """Trade the code for tokens; the checked ID token and its claims.

        Raises:
            LoginRefused: an unknown, used or expired state, a refused code, or an ID token that
                does not qualify (wrong nonce among them).
        """
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.started > LOGIN_SECONDS:
            raise LoginRefused("this sign-in is unknown, already used or expired: start again")
        form = {
            "grant_type": "authorization_code", "code": code, "client_id": self._client_id(),
            "redirect_uri": str(self._settings.oidc_redirect_url), "code_verifier": pending.verifier,
        }  # fmt: skip
        if self._settings.oidc_client_secret is not None:
            form["client_secret"] = self._settings.oidc_client_secret.get_secret_value()
        try:
            answer = self._get_json(self.endpoints()["token_endpoint"], urllib.parse.urlencode(form).encode())
            id_token = str(answer["id_token"])
            claims = self._tokens.claims(id_token, audience=self._client_id())
        except LoginRefused:
            raise
        except Exception as error:  # the provider's answer or the token: refused, with its kind
            raise LoginRefused(
                f"the identity provider's answer was refused: {type(error).__name__}"
            ) from error
        if claims.get("nonce") != pending.nonce:
            raise LoginRefused("the ID token was not issued for this sign-in (nonce)")
        return id_token, claims
