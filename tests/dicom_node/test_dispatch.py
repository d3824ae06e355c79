"""The outbox and the queue over real brokers: Redis and RabbitMQ on this machine, and an outage."""

import shutil
import subprocess
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from dicom_node import routing
from dicom_node.studies import StudyMonitor
from testkit import synthetic
from testkit.peers import free_port, start_triage, stop, wait_until
from tests.dicom_node.test_studies import T0, receive
from triage import messages
from triage.records import outbox
from triage.records.tables import OutboxMessage, StudyState, StudyVersion

pytestmark = pytest.mark.integration

REDIS_TEST_DB = 13


def version_state(database):
    """The study's state; the worker took it when it is NOT_ANALYSED, which a DB-only study (no files in
    storage) always ends as: "missing from storage"."""
    with database.session() as session:
        return session.scalars(select(StudyVersion.state)).one()


def outbox_rows(database):
    with database.session() as session:
        return list(session.scalars(select(OutboxMessage)))


def queue_one_study(database, settings):
    monitor = StudyMonitor(
        database,
        routing.RoutingConfig.load(settings.routing_file),
        outbox.OutboxPublisher(database, outbox.make_celery(settings)),
        60,
    )
    receive(database, [synthetic.dx()], T0)
    return monitor


@pytest.fixture
def redis_url():
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_TEST_DB)
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"
    client.flushdb()


@pytest.fixture
def amqp_url():
    yield "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize("broker", ["redis_url", "amqp_url"])
def test_worker_on_a_real_broker_takes_the_queued_study(make_settings, broker, request, tmp_path):
    settings = make_settings(broker_url=request.getfixturevalue(broker))
    from triage.records.db import Database, migrate

    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    monitor = queue_one_study(database, settings)
    result = monitor.sweep(T0 + timedelta(seconds=2))
    assert result.completed == 1 and result.published == 1
    worker = start_triage("worker", settings, tmp_path / "worker.log")
    try:
        wait_until(lambda: version_state(database) == StudyState.NOT_ANALYSED, timeout=60)
    finally:
        stop(worker)
    [message] = outbox_rows(database)
    assert message.published_at is not None and message.attempts == 1


def test_broker_outage_delays_but_never_loses_a_study(make_settings, tmp_path):
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is part of this machine's services"
    port = free_port()
    settings = make_settings(broker_url=f"redis://127.0.0.1:{port}/0")
    from triage.records.db import Database, migrate

    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    monitor = queue_one_study(database, settings)

    down = monitor.sweep(T0 + timedelta(seconds=2))
    assert down.completed == 1 and down.published == 0
    [message] = outbox_rows(database)
    assert message.published_at is None and "Error" in message.last_error
    assert version_state(database) == StudyState.QUEUED

    server = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    worker = None
    try:
        wait_until(lambda: redis.Redis(port=port).ping(), timeout=10)
        published = wait_until(lambda: monitor.sweep(T0 + timedelta(minutes=5)).published, timeout=10)
        assert published == 1
        worker = start_triage("worker", settings, tmp_path / "worker.log")
        wait_until(lambda: version_state(database) == StudyState.NOT_ANALYSED, timeout=60)
    finally:
        if worker is not None:
            stop(worker)
        server.terminate()
        server.wait()
    [message] = outbox_rows(database)
    assert message.published_at is not None and message.attempts == 2


def test_payload_is_plain_json_with_storage_keys(database, settings):
    monitor = StudyMonitor(database, routing.RoutingConfig.load(settings.routing_file), _NoBroker(), 60)
    receive(database, synthetic.screen(), T0)
    monitor.sweep(T0)
    [message] = outbox_rows(database)
    assert message.task_name == messages.ANALYSE_STUDY == "triage.analyse_study"
    payload = messages.AnalyseStudy.model_validate(message.payload)
    for ref in payload.instances:
        assert not ref.storage_key.startswith("/") and ".." not in ref.storage_key


class _NoBroker:
    def publish_due(self, now, limit=100):
        return 0


@pytest.mark.parametrize(
    ("url", "confirmed"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", True),
        ("pyamqp://h//", True),
        ("redis://127.0.0.1:6379/0", False),
    ],
)
def test_rabbitmq_publishes_are_confirmed(make_settings, url, confirmed):
    """Without publisher confirms a task written to a connection RabbitMQ resets a moment later is
    lost while the outbox counts it published (the acceptance suite's RabbitMQ outage found one)."""
    app = outbox.make_celery(make_settings(broker_url=url))
    assert (app.conf.broker_transport_options or {}).get("confirm_publish", False) is confirmed
