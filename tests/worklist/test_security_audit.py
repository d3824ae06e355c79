"""Security events from the API reach the audit log: refused bearer tokens
(with why), 403s (with the path, never the query string); a request without a token is not one."""

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tests.worklist.test_api import account, signed_in
from tests.worklist.test_auth import bearer
from triage.records import store
from triage.records.tables import AuditEvent, Role, User
from worklist.app import create_app


def security_rows(client, database, action):
    client.app.state.triage.security.flush()
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [(e.actor, e.source, e.detail) for e in rows]


def test_refused_tokens_and_forbidden_routes_are_audited(database, settings):
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        assert client.get("/api/worklist").status_code == 401  # no token: the page before sign-in
        assert client.get("/api/worklist", headers=bearer("made-up")).status_code == 401
        engineer = signed_in(client, database, "eng", Role.ML_ENGINEER)
        assert client.get("/api/worklist?patient=Canary^Name", headers=engineer).status_code == 403
        rad = signed_in(client, database, "rad", Role.RADIOLOGIST)
        with database.session() as session:
            session.execute(update(User).where(User.username == "rad").values(active=False))
        assert client.get("/api/me", headers=rad).status_code == 401
        refused = security_rows(client, database, "token.refused")
        forbidden = security_rows(client, database, "access.forbidden")
    assert refused == [
        ("anonymous", "testclient", "no live session holds this token (unknown, signed out or expired)"),
        ("anonymous", "testclient", "the account local:rad is deactivated"),
    ]
    assert forbidden == [("local:eng", "testclient", "GET /api/worklist needs the radiologist role")]
    assert "Canary" not in str(forbidden)


def test_many_refused_tokens_are_a_few_rows(database, settings):
    account(database, "rad", Role.RADIOLOGIST)
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        for number in range(30):
            assert client.get("/api/me", headers=bearer(f"guess-{number % 3}")).status_code == 401
        rows = security_rows(client, database, "token.refused")
    assert 1 <= len(rows) <= 9  # identical events in one second share a row
    assert sum(int(d.split("(")[2].split(" ")[0]) if "times from" in d else 1 for *_, d in rows) == 30


def test_the_audit_log_pages_with_a_next_link(database, settings):
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        admin = signed_in(client, database, "adm", Role.ADMIN)
        with database.session() as session:
            for number in range(7):
                store.audit(session, actor="anonymous", action="token.refused", source=f"10.0.0.{number}",
                            now=database.now(), detail="unknown")  # fmt: skip
        seen, url = [], "/api/audit?action=token.refused&limit=3"
        while url:
            page = client.get(url, headers=admin)
            assert page.status_code == 200, page.text
            assert len(page.json()) <= 3
            seen += [entry["id"] for entry in page.json()]
            link = page.headers.get("link")
            url = link.split(";")[0].strip("<>") if link else ""
            assert not link or 'rel="next"' in link
        assert len(seen) == len(set(seen)) == 7 and seen == sorted(seen, reverse=True)
        assert client.get("/api/audit?action=DROP TABLE", headers=admin).status_code == 422
