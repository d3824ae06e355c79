"""triage serve's supervision, with real child processes: a child that keeps stopping is started
again after a growing backoff and shows as degraded; its siblings, the listener above all, run on."""

import itertools
import subprocess
import sys
import time

from fastapi.testclient import TestClient

from testkit.peers import wait_until
from triage.records import queries
from triage.supervisor import MAX_BACKOFF_SECONDS, Restarts, Supervisor
from worklist.app import create_app

PROGRAMS = {"listener": "import time; time.sleep(120)", "worker": "raise SystemExit(3)"}


def test_the_backoff_doubles_with_each_stop_in_the_window_up_to_five_minutes():
    restarts = Restarts(base_seconds=1.0, window_seconds=600.0)
    assert [restarts.stopped(t) for t in (0, 1, 2, 3, 4)] == [1, 2, 4, 8, 16]
    assert restarts.looping(4) and not restarts.looping(700), "stops older than the window no longer count"
    assert restarts.stopped(700) == 1
    many = Restarts()
    assert max(many.stopped(t) for t in range(20)) == MAX_BACKOFF_SECONDS


def test_a_crash_looping_worker_never_stops_the_listener_and_shows_as_degraded(settings, database):
    started = []

    def start(name):
        started.append((name, time.monotonic()))
        return subprocess.Popen([sys.executable, "-c", PROGRAMS[name]])

    supervisor = Supervisor(start, ("listener", "worker"), database, backoff_base_seconds=0.05)
    listener = supervisor.children["listener"].process
    try:
        wait_until(lambda: supervisor.check(time.monotonic()) or len(started) >= 7, timeout=60, interval=0.02)
        assert supervisor.children["listener"].process is listener and listener.poll() is None
        times = [at for name, at in started if name == "worker"]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps[-1] > gaps[0] * 4, f"the waits grow: {gaps}"
        with database.reading() as session:
            [detail] = queries.degraded(session, database.now())
        assert detail.startswith("the worker stopped (exit 3), 5 time(s) in 10 min; starting it again in")

        (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
        with TestClient(create_app(database, settings)) as client:
            ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["degraded"] == [detail]
    finally:
        supervisor.stop(5)
    assert listener.poll() is not None
    with database.reading() as session:
        assert queries.degraded(session, database.now()) == [], "stopped with triage serve: nothing degraded"
