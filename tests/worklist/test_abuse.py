"""The API under abuse: sign-in floods throttled and audited, reads that never
hold the write lock ingest waits for, request bodies capped, metric scrapes cached."""

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from testkit import synthetic
from testkit.peers import storescu
from tests.worklist.test_api import PASSWORD, account
from triage.records.tables import AuditEvent, Instance, Role
from worklist.app import create_app
from worklist.throttle import SignInThrottle


@pytest.fixture
def app_for(any_database):
    def build(settings):
        (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
        return TestClient(create_app(any_database, settings))

    return build


def refused_audit(database):
    with database.session() as session:
        return list(session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "session.refused")))


def test_repeated_wrong_passwords_lock_the_account_for_the_window(app_for, make_settings, any_database):
    account(any_database, "rad", Role.RADIOLOGIST)
    account(any_database, "other", Role.RADIOLOGIST)
    with app_for(make_settings(sign_in_max_failures=3)) as client:
        for _ in range(3):
            assert (
                client.post("/api/session", json={"username": "rad", "password": "guess!"}).status_code == 401
            )
        locked = client.post("/api/session", json={"username": "rad", "password": PASSWORD})
        assert locked.status_code == 429, locked.text
        assert 0 < int(locked.headers["Retry-After"]) <= 900
        # another account from the same source still signs in (the source's limit is 4x)
        assert (
            client.post("/api/session", json={"username": "other", "password": PASSWORD}).status_code == 200
        )
    details = refused_audit(any_database)
    assert len(details) == 4 and all("name tried: rad" in d for d in details)
    assert details[-1].startswith("throttled")


def test_the_throttle_forgets_failures_once_the_window_moves_on():
    throttle = SignInThrottle(max_failures=2, window_seconds=60)
    throttle.failed("rad", "10.0.0.1", now=0)
    throttle.failed("RAD", "10.0.0.1", now=10)  # names are matched case-insensitively
    assert throttle.retry_after("rad", "10.0.0.1", now=11) == pytest.approx(49)
    assert throttle.retry_after("rad", "10.0.0.1", now=61) == 0  # the first failure left the window
    for n in range(8):  # one source, many names: the source's own limit (4 x 2)
        throttle.failed(f"user{n}", "10.0.0.2", now=100)
    assert throttle.retry_after("someone-new", "10.0.0.2", now=101) > 0
    assert throttle.retry_after("someone-new", "10.0.0.3", now=101) == 0
    throttle.failed("rad", "10.0.0.1", now=200)
    throttle.succeeded("rad")
    throttle.failed("rad", "10.0.0.1", now=201)
    assert throttle.retry_after("rad", "10.0.0.1", now=202) == 0  # a success clears the account's count


def test_request_bodies_are_capped_before_they_are_read(app_for, make_settings):
    with app_for(make_settings(api_max_body_bytes=2048)) as client:
        huge = client.post(
            "/api/session", content=b"{" + b" " * 4096 + b"}", headers={"Content-Type": "application/json"}
        )
        assert huge.status_code == 413 and "2048 bytes" in huge.json()["detail"]
        chunked = client.post(
            "/api/session",
            content=iter([b'{"username": "a", ', b'"password": "b"}']),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 411
        small = client.post("/api/session", json={"username": "nobody", "password": "x"})
        assert small.status_code == 401  # an ordinary body is read as before


def test_a_scrape_is_answered_from_a_recent_reading(app_for, make_settings, any_database, settings):
    with app_for(make_settings(metrics_cache_seconds=3600)) as client:
        first = client.get("/metrics").text
        from tests.worklist import seed

        seed.worklist_of_every_kind(any_database, settings)
        assert client.get("/metrics").text == first
    with app_for(make_settings(metrics_cache_seconds=0)) as client:
        assert client.get("/metrics").text != first


def test_a_read_holds_no_lock_a_write_waits_for(database):
    with database.session() as session:
        session.execute(text("CREATE TABLE probe (x INTEGER)"))
    with database.reading() as reader:
        reader.execute(text("SELECT count(*) FROM probe")).scalar()
        with database.session() as writer:  # would wait 30 s behind a BEGIN IMMEDIATE
            writer.execute(text("INSERT INTO probe VALUES (1)"))
        with pytest.raises(OperationalError, match="locked"):  # and the reader cannot write
            reader.execute(text("INSERT INTO probe VALUES (2)"))
    with database.reading() as reader:
        assert reader.execute(text("SELECT count(*) FROM probe")).scalar() == 1


@pytest.mark.integration
def test_sign_in_floods_and_scrapes_refuse_no_instance(listener, make_settings, database, tmp_path):
    account(database, "rad", Role.RADIOLOGIST)
    settings = make_settings(metrics_cache_seconds=0)
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    done = threading.Event()
    answers: list[int] = []

    def flood(request):
        with TestClient(create_app(database, settings)) as client:
            while not done.is_set():
                answers.append(request(client).status_code)

    floods = [
        threading.Thread(
            target=flood,
            args=(lambda c: c.post("/api/session", json={"username": "rad", "password": PASSWORD}),),
        ),
        threading.Thread(
            target=flood, args=(lambda c: c.post("/api/session", json={"username": "x", "password": "y"}),)
        ),
        threading.Thread(target=flood, args=(lambda c: c.get("/metrics"),)),
    ]
    paths = synthetic.write([synthetic.dx() for _ in range(200)], tmp_path / "in")
    for thread in floods:
        thread.start()
    try:
        result = storescu(listener.port, *paths)
    finally:
        done.set()
        for thread in floods:
            thread.join(timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    with database.reading() as session:
        assert session.scalar(select(Instance.id).order_by(Instance.id.desc()).limit(1)) is not None
        assert len(session.scalars(select(Instance.id)).all()) == 200
    assert {200, 401, 429} <= set(answers) and len(answers) > 20
