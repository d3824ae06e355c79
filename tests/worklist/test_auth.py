"""Signing in: OIDC bearer tokens checked against a real JWKS over HTTP, the refusal to serve off
loopback with no way to sign in, the first-start admin account, and the users CLI."""

import http.server
import json
import ssl
import subprocess
import sys
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from testkit.peers import REPO, free_port, triage_env
from tests.dicom_node.conftest import make_pki
from triage.records.accounts import add_user, bootstrap_admin
from triage.records.tables import AuditEvent, Role, User
from worklist.app import create_app
from worklist.auth import Unprotected, check_exposure, is_loopback

ISSUER = "https://login.example.org/realms/hospital"


@pytest.fixture(scope="module")
def idp_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("idp") / "pki")


@pytest.fixture(scope="module")
def identity_provider(idp_pki):
    """A signing key and an HTTPS server publishing its JWKS, as an OIDC provider does (its
    certificate signed by a private CA: ``idp_pki / "ca.crt"``). ``FETCHES`` counts its answers."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            FETCHES.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(idp_pki / "server.crt", idp_pki / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"https://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


FETCHES: list[str] = []


def token(key, **claims):
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "triage", "sub": "u-123", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def oidc_client(make_settings, database, identity_provider, idp_pki):
    _, url = identity_provider
    settings = make_settings(
        oidc_issuer=ISSUER, oidc_audience="triage", oidc_jwks_url=url, oidc_roles_claim="realm_access.roles",
        oidc_ca_bundle=idp_pki / "ca.crt",
    )  # fmt: skip
    with TestClient(create_app(database, settings)) as client:
        yield client


def bearer(value):
    return {"Authorization": f"Bearer {value}"}


def test_an_oidc_token_with_the_role_reads_the_worklist(oidc_client, identity_provider, database):
    key, _ = identity_provider
    good = token(
        key, preferred_username="dr.hansen", realm_access={"roles": ["radiologist", "offline_access"]}
    )
    assert oidc_client.get("/api/me", headers=bearer(good)).json() == {
        "name": "oidc:u-123 (dr.hansen)",  # the stable sub first: a user name can be given to another
        "roles": ["radiologist"],
    }
    assert oidc_client.get("/api/worklist", headers=bearer(good)).status_code == 200


def test_the_issuer_and_its_keys_are_reached_over_https_only(make_settings):
    for field in ("oidc_issuer", "oidc_jwks_url"):
        with pytest.raises(ValueError, match="must be an https:// URL"):
            make_settings(
                **{"oidc_issuer": ISSUER, "oidc_audience": "triage", field: "http://idp.example.org/x"}
            )


def test_keys_are_verified_against_the_configured_ca(make_settings, database, identity_provider):
    key, url = identity_provider
    untrusting = make_settings(oidc_issuer=ISSUER, oidc_audience="triage", oidc_jwks_url=url)  # system CAs
    with TestClient(create_app(database, untrusting)) as client:
        good = token(key, realm_access={"roles": ["radiologist"]})
        assert client.get("/api/worklist", headers=bearer(good)).status_code == 401


def test_tokens_naming_unknown_keys_do_not_hammer_the_identity_provider(oidc_client, identity_provider):
    key, _ = identity_provider
    assert oidc_client.get("/api/me", headers=bearer(token(key))).status_code == 200  # keys fetched
    before = len(FETCHES)
    for number in range(25):
        forged = jwt.encode({"sub": "x"}, key, algorithm="RS256", headers={"kid": f"unknown-{number}"})
        assert oidc_client.get("/api/me", headers=bearer(forged)).status_code == 401
    assert len(FETCHES) - before <= 1  # within oidc_key_refresh_seconds: at most one refresh


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"aud": "another-app"}, 401),
        ({"iss": "https://evil.example.org"}, 401),
        ({"exp": int(time.time()) - 3600}, 401),
        ({"realm_access": {"roles": ["ml_engineer"]}}, 403),
        ({}, 403),  # no roles claim: signed in, allowed nothing
    ],
)
def test_oidc_tokens_that_do_not_qualify(oidc_client, identity_provider, claims, status):
    key, _ = identity_provider
    assert oidc_client.get("/api/worklist", headers=bearer(token(key, **claims))).status_code == status


def test_a_token_signed_by_another_key_is_refused(oidc_client):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = token(stranger, realm_access={"roles": ["radiologist"]})
    assert oidc_client.get("/api/worklist", headers=bearer(forged)).status_code == 401


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_off_loopback_needs_an_account_or_oidc(make_settings, database):
    exposed = make_settings(api_host="0.0.0.0")
    with pytest.raises(Unprotected, match=r"refusing to serve the API on 0\.0\.0\.0"):
        check_exposure(exposed, database)
    check_exposure(make_settings(api_host="0.0.0.0", oidc_issuer=ISSUER, oidc_audience="triage"), database)
    with database.session() as session:
        add_user(session, "root", "a long enough secret", frozenset({Role.ADMIN}), actor="test")
    check_exposure(exposed, database)


def test_the_api_command_refuses_to_start_unprotected_off_loopback(settings, database):
    env = triage_env(settings, TRIAGE_API_HOST="0.0.0.0", TRIAGE_API_PORT=str(free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "triage", "api"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "no way to sign in is configured" in result.stderr


def test_first_start_on_loopback_makes_an_admin_with_a_private_password_file(settings, database):
    path = bootstrap_admin(settings.home, database)
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    with TestClient(create_app(database, settings)) as client:
        password = path.read_text().strip()
        response = client.post("/api/session", json={"username": "admin", "password": password})
    assert response.status_code == 200 and response.json()["roles"] == ["admin"]
    assert not path.exists()  # it has done its work: the password is not left lying on disk
    assert bootstrap_admin(settings.home, database) is None  # once only


def users_add(settings, *arguments):
    return subprocess.run(
        [sys.executable, "-m", "triage", "users", "add", *arguments, "--password-stdin"],
        input="a long enough secret\n",
        env=triage_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_users_cli_adds_an_account_with_a_hashed_password(settings, database):
    result = users_add(settings, "dr.berg", "--role", "radiologist", "--role", "ml_engineer")
    assert result.returncode == 0, result.stderr
    with database.session() as session:
        user = session.scalars(select(User)).one()
        assert user.role_set == {Role.RADIOLOGIST, Role.ML_ENGINEER}
        assert user.password_hash.startswith("$argon2id$") and "long enough" not in user.password_hash
        assert session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all() == [
            "user.created", "user.role_granted", "user.role_granted",
        ]  # fmt: skip
        grants = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "user.role_granted"))
        assert sorted(grants) == ["dr.berg: ml_engineer", "dr.berg: radiologist"]
    refused = users_add(settings, "x", "--role", "surgeon")
    assert refused.returncode == 2 and "'surgeon' is not a role" in refused.stderr


def test_a_refused_oidc_token_is_audited_with_the_reason(oidc_client, identity_provider, database):
    from tests.worklist.test_security_audit import security_rows

    key, _ = identity_provider
    expired = token(key, exp=1, realm_access={"roles": ["radiologist"]})
    assert oidc_client.get("/api/worklist", headers=bearer(expired)).status_code == 401
    assert security_rows(oidc_client, database, "token.refused") == [
        ("anonymous", "testclient", "OIDC token refused: ExpiredSignatureError")
    ]


def test_while_the_identity_provider_is_down_tokens_are_refused_without_waiting_on_it(
    make_settings, database, identity_provider
):
    key, _ = identity_provider
    down = f"https://127.0.0.1:{free_port()}/jwks"  # nobody listens
    settings = make_settings(oidc_issuer=ISSUER, oidc_audience="triage", oidc_jwks_url=down)
    with TestClient(create_app(database, settings)) as client:
        for _ in range(10):
            assert client.get("/api/me", headers=bearer(token(key))).status_code == 401
        jwks = client.app.state.triage.authenticator._tokens.jwks()
    assert jwks.fetches == 1  # the failure is remembered for oidc_key_refresh_seconds
