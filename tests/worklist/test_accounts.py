"""Accounts: passwords changed by their users (API) and reset by an admin (CLI),
other sessions ended; the last active admin kept; role grants audited as such."""

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from testkit.peers import REPO, triage_env
from tests.worklist.test_api import PASSWORD, account, signed_in
from triage.records.tables import AuditEvent, Role
from worklist.app import create_app

NEW = "a new and longer passphrase"


@pytest.fixture
def client(database, settings):
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as test_client:
        yield test_client


def sign_in(client, name, password):
    return client.post("/api/session", json={"username": name, "password": password})


def actions(database, action):
    with database.session() as session:
        return list(session.scalars(select(AuditEvent.detail).where(AuditEvent.action == action)))


def test_users_change_their_own_password_and_their_other_sessions_end(client, database):
    here = signed_in(client, database, "rad", Role.RADIOLOGIST)
    elsewhere = {"Authorization": f"Bearer {sign_in(client, 'rad', PASSWORD).json()['token']}"}
    wrong = client.post("/api/me/password", json={"current_password": "not it at all", "new_password": NEW},
                        headers=here)  # fmt: skip
    assert wrong.status_code == 403
    assert any("wrong current password" in d for d in actions(database, "session.refused"))
    short = client.post("/api/me/password", json={"current_password": PASSWORD, "new_password": "short"},
                        headers=here)  # fmt: skip
    assert short.status_code == 422
    changed = client.post("/api/me/password", json={"current_password": PASSWORD, "new_password": NEW},
                          headers=here)  # fmt: skip
    assert changed.status_code == 204
    assert client.get("/api/me", headers=here).status_code == 200  # this session goes on
    assert client.get("/api/me", headers=elsewhere).status_code == 401  # every other one ended
    assert sign_in(client, "rad", PASSWORD).status_code == 401
    assert sign_in(client, "rad", NEW).status_code == 200
    assert actions(database, "user.password_changed") == ["rad; its other sessions ended"]


def test_an_admin_resets_a_password_from_the_cli_and_every_session_ends(client, database, settings):
    token = signed_in(client, database, "rad", Role.RADIOLOGIST)
    result = subprocess.run(
        [sys.executable, "-m", "triage", "users", "password", "rad", "--password-stdin"],
        input=NEW + "\n", env=triage_env(settings), cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert client.get("/api/me", headers=token).status_code == 401
    assert sign_in(client, "rad", NEW).status_code == 200


def test_the_last_active_admin_cannot_be_deactivated(client, database):
    admin = signed_in(client, database, "adm", Role.ADMIN)
    refused = client.delete("/api/users/adm", headers=admin)
    assert refused.status_code == 409 and "last active admin" in refused.json()["detail"]
    account(database, "adm2", Role.ADMIN)
    assert client.delete("/api/users/adm2", headers=admin).status_code == 204
    assert client.delete("/api/users/adm", headers=admin).status_code == 409  # adm2 is gone again
    assert client.get("/api/users", headers=admin).status_code == 200
