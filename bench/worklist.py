"""The worklist at a region's scale: the queue pages, the study page and /metrics on PostgreSQL seeded
through triage's own tables with a small and a large history, measured in the same run.

The figure that holds on a noisy machine is the ratio large / small of each median: 1.0 means a page
costs the same whatever the history (every queue is filtered, ordered and limited in SQL); before,
the queue page read every latest version to keep a hundred and failed past 65,535 of them.

    python -m bench.worklist [--small 10000] [--large 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from bench import record
from triage.outcomes import BreastOutcome, FractureOutcome
from triage.records.accounts import add_user
from triage.records.db import Database, migrate
from triage.records.tables import Delivery, Result, Role, StateChange, Study, StudyState, StudyVersion
from triage.records.verdicts import acting_outcome, acting_verdict, urgency
from triage.settings import load_settings
from worklist.app import create_app
from worklist.views import Queue

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-not-secret"  # a throwaway account in a throwaway database
T0 = datetime(2025, 1, 1, tzinfo=UTC)
_BATCH = 5000


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    admin = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _outcome(rng: random.Random, breast: bool) -> FractureOutcome | BreastOutcome:
    if breast:
        score = rng.randint(1, 10)
        route = "SINGLE_READ" if score <= 5 else "DOUBLE_READ"
        return BreastOutcome(score=score, probability=score / 10, route=route, high_risk=score == 10)
    state = rng.choices(["FRACTURE", "DOUBT", "NO_FRACTURE"], [0.3, 0.5, 0.2])[0]
    return FractureOutcome(state=state, probability=rng.random())


def seed(database: Database, versions: int, seed_value: int = 7) -> None:
    """``versions`` studies of one version each, 60 % trauma and 40 % screens, most REPORTED with two
    delivered objects, some NOT ANALYSED and some waiting: the mix of a region's history."""
    rng = random.Random(seed_value)
    with database.session() as session:
        first = (session.scalar(select(sqlalchemy.func.max(Study.id))) or 0) + 1
    for start in range(first, first + versions, _BATCH):
        ids = range(start, min(start + _BATCH, first + versions))
        studies, rows, results, deliveries, changes = [], [], [], [], []
        for n in ids:
            breast = rng.random() < 0.4
            opened = T0 + timedelta(minutes=n)
            state = rng.choices(
                [StudyState.REPORTED, StudyState.NOT_ANALYSED, StudyState.QUEUED], [0.9, 0.08, 0.02]
            )[0]
            outcome = _outcome(rng, breast) if state == StudyState.REPORTED else None
            verdict = acting_verdict(state, outcome, reporting=True)
            studies.append({
                "id": n, "study_instance_uid": f"2.25.{n}", "patient_id": f"P{n:08d}",
                "issuer_of_patient_id": "", "patient_name": f"Bench^Patient{n}",
                "patient_birth_date": "19600101",
                "accession_number": f"A{n:08d}", "study_date": "20250101", "study_description": "",
                "conflict": False, "current_version": 1, "created_at": opened,
            })  # fmt: skip
            rows.append({
                "id": n, "study_id": n, "number": 1, "state": state, "reason": "",
                "pipeline": "breast" if breast else "fracture", "opened_at": opened,
                "last_instance_at": opened, "completed_at": opened + timedelta(seconds=30),
                "verdict": verdict,
                "urgency": urgency(verdict, acting_outcome(state, outcome, reporting=True)),
                "reported_seconds": rng.uniform(1, 5) if outcome is not None else None,
            })  # fmt: skip
            changes.append({"version_id": n, "state": state, "reason": "", "at": opened})
            if outcome is None:
                continue
            results.append({
                "version_id": n, "pipeline": outcome.pipeline, "analysed": True, "summary": "bench",
                "model_name": "bench", "model_version": "1", "weights_sha256": "",
                "software_version": "bench", "device": "cpu", "outcome": outcome,
                "score": getattr(outcome, "score", None), "inputs": {}, "timings_ms": {},
                "created_at": opened,
            })  # fmt: skip
            for kind in ("sc", "sr"):
                deliveries.append({
                    "version_id": n, "kind": kind, "sop_instance_uid": f"2.25.{n}.{kind == 'sr'}",
                    "storage_key": "k", "state": "DELIVERED", "attempts": 1, "next_attempt_at": opened,
                    "created_at": opened, "delivered_at": opened,
                })  # fmt: skip
        with database.session() as session:
            tables = ((Study, studies), (StudyVersion, rows), (StateChange, changes), (Result, results))
            for table, values in (*tables, (Delivery, deliveries)):
                if values:
                    session.execute(insert(table), values)
    with database.session() as session:
        for table in ("studies", "study_versions"):  # explicit ids: move the sequences past them
            session.execute(
                sqlalchemy.text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
            )
        session.execute(sqlalchemy.text("ANALYZE"))


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(database: Database, home: Path, repeats: int) -> dict[str, float]:
    """Median seconds of each queue page, the study page and an uncached /metrics scrape."""
    settings = load_settings(home=home, database_url=database.url, metrics_cache_seconds=0)
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with database.session() as session:
        study_id = session.scalar(select(sqlalchemy.func.max(Study.id)))
    figures: dict[str, float] = {}
    with TestClient(create_app(database, settings)) as client:
        token = client.post("/api/session", json={"username": "bench", "password": PASSWORD}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}

        def get(path: str) -> Callable[[], object]:
            def call() -> object:
                response = client.get(path, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
                return response

            return call

        for queue in Queue:
            figures[f"queue {queue}"] = _median_seconds(get(f"/api/worklist?queue={queue}"), repeats)
        figures["study page"] = _median_seconds(get(f"/api/studies/{study_id}"), repeats)
        figures["metrics"] = _median_seconds(get("/metrics"), repeats)
    return figures


def run(small: int, large: int, repeats: int) -> dict[str, dict[str, float]]:
    """Seed ``small`` versions and measure, grow to ``large`` and measure again, in one database."""
    with (
        scratch_database(f"triage_bench_worklist_{time.time_ns()}") as url,
        tempfile.TemporaryDirectory() as home,
    ):
        migrate(url)
        database = Database(url)
        with database.session() as session:
            add_user(session, "bench", PASSWORD, frozenset({Role.RADIOLOGIST}), actor="bench")
        try:
            seed(database, small)
            at_small = measure(database, Path(home), repeats)
            seed(database, large - small, seed_value=8)
            at_large = measure(database, Path(home), repeats)
        finally:
            database.dispose()
    return {
        name: {"small_s": at_small[name], "large_s": at_large[name], "ratio": at_large[name] / at_small[name]}
        for name in at_small
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000, help="study versions in the small history")
    parser.add_argument("--large", type=int, default=200_000, help="study versions in the large history")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures = run(args.small, args.large, args.repeats)
    print(
        f"worklist on PostgreSQL: median of {args.repeats}, {args.small:,} vs {args.large:,} study versions"
    )
    print(f"{'page':<24}{'small (ms)':>12}{'large (ms)':>12}{'large/small':>13}")
    for name, found in figures.items():
        small_ms, large_ms = found["small_s"] * 1000, found["large_s"] * 1000
        print(f"{name:<24}{small_ms:>12.1f}{large_ms:>12.1f}{found['ratio']:>13.2f}")
    record("worklist", {"small": args.small, "large": args.large, "pages": figures})


if __name__ == "__main__":
    main()
