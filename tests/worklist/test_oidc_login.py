"""Signing in from the page with the identity provider: the authorization code
flow with PKCE against a small OIDC provider run in the test process over https (private CA), which
checks the code verifier against the challenge as a real one does."""

import base64
import hashlib
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.dicom_node.conftest import make_pki
from triage.records.tables import AuditEvent
from worklist.app import create_app

CLIENT = "triage-page"
REDIRECT = "http://testserver/api/oidc/callback"


class Provider:
    """Discovery, JWKS, /authorize (approves at once) and /token (checks code, client, redirect, PKCE)."""

    def __init__(self, pki):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes, self.token_requests = {}, []
        provider = self
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _json(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode() if isinstance(body, dict) else body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks",
                                     "authorization_endpoint": f"{provider.issuer}/authorize",
                                     "token_endpoint": f"{provider.issuer}/token"})  # fmt: skip
                elif url.path == "/jwks":
                    self._json(200, jwks)
                elif url.path == "/authorize":
                    assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = query
                    target = f"{query['redirect_uri']}?code={code}&state={query['state']}"
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                form = dict(
                    urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
                )
                provider.token_requests.append(form)
                asked = provider.codes.pop(form.get("code"), None)
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                proof = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if (asked is None or proof != asked["code_challenge"]
                        or form["client_id"] != asked["client_id"]
                        or form["redirect_uri"] != asked["redirect_uri"]):  # fmt: skip
                    self._json(400, {"error": "invalid_grant"})
                    return
                now = int(time.time())
                claims = {"iss": provider.issuer, "aud": asked["client_id"], "sub": "u-77", "iat": now,
                          "exp": now + 300, "nonce": provider.nonce_override or asked["nonce"],
                          "preferred_username": "dr.lund",
                          "realm_access": {"roles": ["radiologist"]}}  # fmt: skip
                token = jwt.encode(claims, provider.key, algorithm="RS256", headers={"kid": "k1"})
                self._json(200, {"id_token": token, "access_token": "opaque", "token_type": "Bearer"})

            def log_message(self, *args):
                pass

        self.nonce_override = None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki / "server.crt", pki / "server.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.issuer = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def provider(tmp_path):
    pki = make_pki(tmp_path / "pki")
    found = Provider(pki)
    found.ca = pki / "ca.crt"
    yield found
    found.server.shutdown()


@pytest.fixture
def page(provider, make_settings, database):
    settings = make_settings(
        oidc_issuer=provider.issuer, oidc_audience="triage-api", oidc_client_id=CLIENT,
        oidc_redirect_url=REDIRECT, oidc_ca_bundle=provider.ca, oidc_roles_claim="realm_access.roles",
    )  # fmt: skip
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings), follow_redirects=False) as client:
        yield client


TAB = "a" * 32  # the page's random mark for its sign-in


def through_the_provider(page, provider, browser_back=None):
    """What the browser does: /api/oidc/login, the provider, back to the callback (in
    ``browser_back``, another browser, when given); the fragment."""
    started = page.get(f"/api/oidc/login?tab={TAB}")
    assert started.status_code == 302
    cookie = started.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/api/oidc" in cookie
    authorize = started.headers["location"]
    assert authorize.startswith(f"{provider.issuer}/authorize?") and "code_challenge=" in authorize
    approved = httpx.get(authorize, verify=ssl.create_default_context(cafile=provider.ca))
    assert approved.status_code == 302
    back = urllib.parse.urlsplit(approved.headers["location"])
    finished = (browser_back or page).get(f"{back.path}?{back.query}")
    assert finished.status_code == 302
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(finished.headers["location"]).fragment)), back


def test_a_radiologist_signs_in_from_the_page_with_the_identity_provider(page, provider, database):
    assert page.get("/api/oidc").json() == {"enabled": True}
    fragment, _ = through_the_provider(page, provider)
    assert "code_verifier" in provider.token_requests[-1]  # PKCE: the verifier went to the provider
    assert fragment["tab"] == TAB, "the page's mark comes back beside the token"
    me = page.get("/api/me", headers={"Authorization": f"Bearer {fragment['token']}"})
    assert me.json() == {"name": "oidc:u-77 (dr.lund)", "roles": ["radiologist"]}
    assert (
        page.get("/api/worklist", headers={"Authorization": f"Bearer {fragment['token']}"}).status_code == 200
    )
    with database.session() as session:
        started = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "session.started")
        ).all()
    assert started == ["oidc:u-77 (dr.lund)"]


def test_a_state_is_good_once_and_a_forged_one_is_refused(page, provider, database):
    fragment, back = through_the_provider(page, provider)
    assert "token" in fragment
    replayed = page.get(f"{back.path}?{back.query}")  # the same state (and code) again
    assert "did not start this sign-in" in urllib.parse.unquote_plus(replayed.headers["location"])
    forged = page.get("/api/oidc/callback?code=abc&state=made-up")
    assert "sign-in-error" in forged.headers["location"] and "token=" not in forged.headers["location"]
    with database.session() as session:
        refused = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "session.refused")
        ).all()
    assert len(refused) == 2 and all("identity provider sign-in" in detail for detail in refused)


def test_an_id_token_for_another_sign_in_is_refused(page, provider):
    provider.nonce_override = "someone-elses-nonce"
    fragment, _ = through_the_provider(page, provider)
    assert "token" not in fragment and "nonce" in fragment["sign-in-error"]


def test_without_a_redirect_url_the_page_signs_in_locally(make_settings, database):
    settings = make_settings()
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings), follow_redirects=False) as client:
        assert client.get("/api/oidc").json() == {"enabled": False}
        assert client.get(f"/api/oidc/login?tab={TAB}").status_code == 404


def test_a_callback_in_another_browser_is_refused(page, provider, make_settings, database):
    """Login CSRF: an attacker's own valid callback, planted in a victim's browser, which never
    started that sign-in and so has no cookie of it."""
    with TestClient(page.app, follow_redirects=False) as victim:
        fragment, _ = through_the_provider(page, provider, browser_back=victim)
    assert "token" not in fragment and "did not start this sign-in" in fragment["sign-in-error"]
    started = page.get(f"/api/oidc/login?tab={TAB}")
    forged = started.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    page.cookies.clear()
    tampered = forged[:-1] + ("0" if forged[-1] != "0" else "1")
    page.cookies.set("triage_oidc", tampered, path="/api/oidc")
    refused = page.get("/api/oidc/callback?code=abc&state=whatever")
    assert "did not start this sign-in" in urllib.parse.unquote_plus(refused.headers["location"])


def test_a_thousand_anonymous_starts_hold_nothing_and_block_no_one(page, provider):
    """Nothing of a sign-in waits in the API's memory: a flood of starts cannot block the next."""
    for _ in range(1000):
        assert page.get(f"/api/oidc/login?tab={TAB}").status_code == 302
    assert not hasattr(page.app.state.triage.logins, "_pending")
    fragment, _ = through_the_provider(page, provider)
    assert "token" in fragment


def test_a_start_without_the_pages_mark_is_refused(page):
    assert page.get("/api/oidc/login").status_code == 422
    assert page.get("/api/oidc/login?tab=short").status_code == 422
