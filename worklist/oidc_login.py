"""Signing in from the page with the hospital's identity provider: the OIDC authorization code
flow with PKCE (RFC 7636, S256), the API as the client.

``start`` makes a one-time ``state``, a code verifier and a nonce, and sends the browser to the
provider with them in a cookie of its own (HttpOnly, SameSite=Lax, ten minutes, signed with a key
under ``TRIAGE_HOME``), so that nothing waits in the API's memory: anonymous requests cannot fill
it and block sign-ins, and every API process of one home takes the callback. ``finish`` takes the
code back at the redirect URL only with that browser's cookie, whose state must be the one the
provider returns (a callback planted in another browser, login CSRF, has no such cookie), trades
the code (with the verifier) at the token endpoint, checks the ID token like any bearer token
(signature, issuer, audience = client id, expiry) plus its nonce, and hands the ID token to the page
in the URL fragment (never sent to a server, never in a log), beside the ``tab`` value the page made
when it started, so that a page only takes a token from a sign-in it began itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from triage.settings import Settings
from worklist.oidc import TokenVerifier

LOGIN_SECONDS = 600
COOKIE = "triage_oidc"
KEY_FILE, KEY_BYTES = "oidc-cookie-key", 32


class LoginRefused(ValueError):
    """The sign-in cannot go on; the message says why (shown to the user, audited)."""


@dataclass(frozen=True)
class Pending:
    """A sign-in under way, as its cookie carries it."""

    state: str
    verifier: str
    nonce: str
    tab: str
    expires: float  # Unix time

    def seal(self, key: bytes) -> str:
        """The cookie value: the fields and their HMAC-SHA256 under ``key``."""
        body = base64.urlsafe_b64encode(json.dumps(self.__dict__).encode()).decode().rstrip("=")
        return f"{body}.{_mac(key, body)}"

    @classmethod
    def open(cls, key: bytes, cookie: str, now: float) -> Pending:
        """The sign-in a cookie carries, if it is ours and not expired.

        Raises:
            LoginRefused: no cookie, a forged or damaged one, or an expired one.
        """
        body, _, mac = cookie.partition(".")
        if not cookie or not hmac.compare_digest(mac, _mac(key, body)):
            raise LoginRefused(
                "this browser did not start this sign-in (or its cookie was lost): start again"
            )
        try:
            pending = cls(**json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))
        except (binascii.Error, ValueError, TypeError) as error:
            raise LoginRefused("this sign-in's cookie is damaged: start again") from error
        if now > pending.expires:
            raise LoginRefused("this sign-in expired: start again")
        return pending


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).hexdigest()


def challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class LoginFlows:
    """Authorization code flows in progress, and the provider's endpoints (discovered once)."""

    def __init__(self, settings: Settings, tokens: TokenVerifier, key: bytes) -> None:
        self._settings = settings
        self._tokens = tokens
        self._key = key
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

    def start(self, tab: str) -> tuple[str, str]:
        """A new sign-in for the page's ``tab``: the provider's authorization URL to send the browser
        to, and the value of the cookie that the browser must bring back."""
        pending = Pending(
            state=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            nonce=secrets.token_urlsafe(24),
            tab=tab,
            expires=time.time() + LOGIN_SECONDS,
        )
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self._client_id(), "scope": "openid profile",
            "redirect_uri": self._settings.oidc_redirect_url, "state": pending.state, "nonce": pending.nonce,
            "code_challenge": challenge(pending.verifier), "code_challenge_method": "S256",
        })  # fmt: skip
        return f"{self.endpoints()['authorization_endpoint']}?{query}", pending.seal(self._key)

    def finish(self, state: str, code: str, cookie: str) -> tuple[str, dict[str, Any], str]:
        """Trade the code for tokens; the checked ID token, its claims and the page's tab.

        Raises:
            LoginRefused: no cookie of this sign-in, a state other than the cookie's, an expired
                sign-in, a refused code, or an ID token that does not qualify (wrong nonce among them).
        """
        pending = Pending.open(self._key, cookie, time.time())
        if not hmac.compare_digest(pending.state, state):
            raise LoginRefused("this sign-in is not the one this browser started: start again")
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
        return id_token, claims, pending.tab
