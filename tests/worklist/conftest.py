"""The study database on both engines the service supports: SQLite (WAL) and the real PostgreSQL."""

import pytest

from triage.records.db import Base, Database, migrate


def empty(database):
    """Delete every row, children first (foreign keys)."""
    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def any_database(request, settings):
    url = (
        settings.resolved_database_url
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    migrate(url)
    database = Database(url)
    empty(database)  # the PostgreSQL database is shared by the session's tests
    yield database
    database.dispose()


@pytest.fixture
def client(any_database, settings):
    """The API in the test process, on either database."""
    from fastapi.testclient import TestClient

    from worklist.app import create_app

    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(any_database, settings)) as test_client:
        yield test_client
