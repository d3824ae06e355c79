"""The clock deadlines are measured in: the database server's on PostgreSQL, monotonic in between.

A host whose wall clock is wrong is a real process here: Debian's libfaketime puts it two hours
behind (its monotonic clock left alone). libfaketime 0.9.10 breaks Python's ``time.sleep`` when
monotonic time is not faked (EINVAL from clock_nanosleep), so whole services cannot run under it;
the faked process only reads the clock, as a worker does when it claims a study.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testkit.peers import REPO
from triage.records.db import Clock, Database

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

READ_CLOCKS = """
import json, sys
from triage.records.db import Database, utcnow
database = Database(sys.argv[1])
print(json.dumps({"database": database.now().isoformat(), "host": utcnow().isoformat()}))
"""


@pytest.mark.integration
def test_a_host_two_hours_behind_reads_the_database_servers_time(postgres_url, tmp_path):
    assert Path(LIBFAKETIME).is_file(), "libfaketime is not installed: run 'make peers' (make test does)"
    clock_file = tmp_path / "faketime"
    clock_file.write_text("-2h\n")
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", READ_CLOCKS, postgres_url],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    seen = {key: datetime.fromisoformat(value) for key, value in json.loads(done.stdout).items()}
    real = datetime.now(UTC)
    assert abs(seen["host"] - (real - timedelta(hours=2))) < timedelta(minutes=1), "the host is faked"
    assert abs(seen["database"] - real) < timedelta(seconds=30), "deadlines use the server's clock"


@pytest.mark.integration
def test_postgres_clock_is_the_servers(postgres_url):
    database = Database(postgres_url)
    try:
        now = database.now()
        assert now.tzinfo is not None and abs(now - datetime.now(UTC)) < timedelta(seconds=30)
    finally:
        database.dispose()


class SteppingWall:
    """A wall clock an operator or NTP steps."""

    def __init__(self) -> None:
        self.value = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.value


def test_a_wall_clock_step_moves_no_deadline_of_a_running_process(monkeypatch):
    wall = SteppingWall()
    clock = Clock(wall, recalibrate_seconds=None)  # SQLite: this host's clock, read once
    start = clock.now()
    for step in (timedelta(hours=1), timedelta(hours=-3)):
        wall.value += step
        elapsed = clock.now() - start
        assert timedelta(0) <= elapsed < timedelta(seconds=5), "only real elapsed time counts"
    assert wall.reads == 1


def test_the_database_clock_is_read_again_and_a_step_of_it_is_followed_and_logged(monkeypatch, caplog):
    import time as real_time

    wall = SteppingWall()
    clock = Clock(wall, recalibrate_seconds=60)
    monotonic = [1000.0]
    monkeypatch.setattr(real_time, "monotonic", lambda: monotonic[0])
    first = clock.now()
    monotonic[0] += 30
    assert clock.now() - first == timedelta(seconds=30) and wall.reads == 1
    wall.value += timedelta(minutes=10)  # the server's clock moved
    monotonic[0] += 40
    assert clock.now() == wall.value and wall.reads == 2, "every process follows the one server"
    assert "the database clock moved by 530 s" in caplog.text
