"""OIDC bearer tokens: a JWT signed by one of the issuer's keys (JWKS), for our audience.

The issuer's discovery document and its JWKS are fetched over https only, verified against the
system's CAs or ``oidc_ca_bundle`` (a hospital's private CA). A token naming a key id we do not
hold makes us fetch the JWKS again at most once every ``oidc_key_refresh_seconds``, and a failed
fetch is not retried sooner either: a flood of forged tokens costs the identity provider nothing
and never stalls the API on its timeouts. The principal is named by the token's ``sub`` (stable at
the provider; a preferred_username can be reassigned), with the user name beside it to read.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.request
from typing import Any

import jwt

from triage.records.tables import Role
from triage.settings import Settings

logger = logging.getLogger(__name__)
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class KeysUnavailable(jwt.PyJWKClientError):
    """The JWKS could not be fetched lately; not tried again until the refresh interval passed."""


class RateLimitedJwks(jwt.PyJWKClient):
    """PyJWT's client (its cooldown spaces successful refreshes) with failed fetches spaced too."""

    def __init__(self, url: str, context: ssl.SSLContext, refresh_seconds: float) -> None:
        super().__init__(url, cache_keys=True, lifespan=3600, timeout=10, ssl_context=context,
                         cooldown_duration=refresh_seconds)  # fmt: skip
        self._refresh = refresh_seconds
        self._failed_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def fetch_data(self) -> Any:
        with self._lock:
            if self._failed_at is not None and time.monotonic() - self._failed_at < self._refresh:
                raise KeysUnavailable("the identity provider's keys could not be fetched lately")
            self.fetches += 1
        try:
            return super().fetch_data()
        except jwt.PyJWKClientError:
            with self._lock:
                self._failed_at = time.monotonic()
            raise


def tls_context(settings: Settings) -> ssl.SSLContext:
    """TLS 1.2+ to the identity provider, verified against ``oidc_ca_bundle`` or the system's CAs."""
    context = ssl.create_default_context(cafile=settings.oidc_ca_bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class TokenVerifier:
    """Checks bearer JWTs against the configured issuer; the JWKS client is made on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.context = tls_context(settings)
        self._jwks: RateLimitedJwks | None = None
        self._lock = threading.Lock()

    def jwks(self) -> RateLimitedJwks:
        with self._lock:
            if self._jwks is None:
                url = self._settings.oidc_jwks_url or self._discover()
                if not url.startswith("https://"):
                    raise KeysUnavailable(f"the issuer's jwks_uri is not https: {url}")
                self._jwks = RateLimitedJwks(url, self.context, self._settings.oidc_key_refresh_seconds)
            return self._jwks

    def _discover(self) -> str:
        issuer = str(self._settings.oidc_issuer).rstrip("/")
        discovery = f"{issuer}/.well-known/openid-configuration"  # https: checked with the settings
        with urllib.request.urlopen(discovery, timeout=10, context=self.context) as response:  # noqa: S310
            return str(json.load(response)["jwks_uri"])

    def claims(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The token's claims once its signature, issuer, audience and lifetime hold (``audience``:
        that one only; by default ours, or our client id: the page's ID tokens name it).

        Raises:
            jwt.PyJWTError, OSError, KeyError, ValueError: the token does not qualify (or no key).
        """
        key = self.jwks().get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=audience or self._audiences(),
            issuer=self._settings.oidc_issuer,
            options={"require": ["exp", "iss", "aud", "sub"]},
            leeway=30,
        )
        return claims

    def _audiences(self) -> list[str]:
        return [a for a in (self._settings.oidc_audience, self._settings.oidc_client_id) if a]

    def identity(self, claims: dict[str, Any]) -> tuple[str, frozenset[Role]]:
        """The principal's name (``oidc:<sub>``, the user name in brackets) and roles."""
        raw = _claim(claims, self._settings.oidc_roles_claim)
        names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        known = {role.value for role in Role}
        roles = frozenset(Role(name) for name in names if isinstance(name, str) and name in known)
        subject, username = str(claims["sub"]), str(claims.get("preferred_username") or "")
        named = f" ({username})" if username and username != subject else ""
        return f"oidc:{subject}{named}", roles
