"""Shared fixtures: settings on a temporary home, a running listener, synthetic studies, peers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dicom_node.listener import Listener
from testkit.peers import REPO
from triage.records.db import Database, migrate
from triage.settings import Settings, load_settings

CALLING_AES = "STORESCU,TRIAGESCU,ORTHANC,TESTSCU,ECHOSCU"


@pytest.fixture
def routing_file(tmp_path: Path) -> Path:
    """The shipped routing rules with short quiet periods, so tests do not wait half a minute."""
    config = yaml.safe_load((REPO / "configs" / "routing.yaml").read_text())
    for pipeline in config["pipelines"].values():
        pipeline["quiet_period_seconds"] = 1.0
    config["unrouted_quiet_period_seconds"] = 1.0
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of ONNX exports for the whole run: each is made once per weights, not per test."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture
def make_settings(tmp_path: Path, routing_file: Path, onnx_cache: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "onnx_cache": onnx_cache,
            "dicom_port": 0,
            "allowed_calling_aes": CALLING_AES,
            "routing_file": routing_file,
            "monitor_interval_seconds": 0.1,
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    migrate(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    yield db
    db.dispose()


@pytest.fixture
def listener(settings: Settings) -> Iterator[Listener]:
    node = Listener(settings)
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's real PostgreSQL, dropped afterwards."""
    import sqlalchemy

    name = f"triage_test_{os.getpid()}"
    admin = sqlalchemy.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
