"""The acceptance scenarios' harness: a site (listener and worker as their own processes, Orthanc as
the PACS), senders that keep what was acknowledged, the five invariants after each scenario, and the
table ``make acceptance`` prints."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE
from sqlalchemy import select

from testkit import invariants
from testkit.peers import Orthanc, free_port, require_tool, start_triage, stop, wait_until
from testkit.syslog import Collector
from triage.records.db import Database, migrate
from triage.records.tables import AuditEvent, Delivery, DeliveryState, StudyVersion

ROWS: list[tuple[str, bool, str]] = []
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless)


class Site:
    """triage as `triage serve` runs it (listener and worker processes), sending to Orthanc."""

    def __init__(
        self,
        folder: Path,
        make_settings,
        env: dict[str, str] | None = None,
        storescp: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        port = free_port()
        self.folder = folder
        self.env = dict(env or {})  # settings the processes take beyond testkit.peers.triage_env's
        self.pacs: Orthanc | None = None
        self.storescp: subprocess.Popen[bytes] | None = None
        if storescp:  # DCMTK's storescp as the PACS, with the misbehaviour its options ask for
            pacs_port, self.received = free_port(), folder / "storescp"
            self.received.mkdir(parents=True)
            command = [require_tool("storescp"), *storescp, "-od", str(self.received), str(pacs_port)]
            self.storescp = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            peer = f"STORESCP@127.0.0.1:{pacs_port}"
        else:
            self.pacs = Orthanc(folder / "orthanc", {"triage": ("TRIAGE", "127.0.0.1", port)})
            peer = f"ORTHANC@127.0.0.1:{self.pacs.dicom_port}"
        # Every scenario forwards its audit log to a syslog collector (invariant 5: each event once).
        collector_port = free_port()
        self.collector = Collector(collector_port)
        self.env.setdefault("TRIAGE_AUDIT_SYSLOG_URL", f"tcp://127.0.0.1:{collector_port}")
        extra = {"database_url": database_url} if database_url else {}
        self.settings = make_settings(dicom_port=port, api_port=free_port(), pacs=peer, **extra)
        migrate(self.settings.resolved_database_url)
        self.database = Database(self.settings.resolved_database_url)
        self.acknowledged: set[str] = set()
        self.listener = self.start("listener")
        self.worker = self.start("worker")
        wait_until(self._answers, timeout=60, interval=0.2)
        wait_until(lambda: self.log_says("worker", " ready.") > 0, timeout=120, interval=0.2)

    def start(self, command: str, **extra: str):
        log = self.folder / f"{command}-{time.monotonic_ns()}.log"
        return start_triage(command, self.settings, log, **{**self.env, **extra})

    def _answers(self, port: int | None = None) -> bool:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port or self.settings.dicom_port, ae_title="TRIAGE")
        if not assoc.is_established:
            return False
        assoc.release()
        return True

    def send(self, datasets: list[Dataset], associations: int = 1, port: int | None = None) -> int:
        """C-STORE over ``associations`` associations at once, in the data sets' own transfer
        syntaxes, to this site's listener (or another on ``port``); keeps the SOP Instance UIDs
        answered 0x0000. Returns how many were."""
        groups = [datasets[i::associations] for i in range(associations)]
        target = port or self.settings.dicom_port
        threads = [
            threading.Thread(target=self._send_group, args=(group, target)) for group in groups if group
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        return sum(str(ds.SOPInstanceUID) in self.acknowledged for ds in datasets)

    def _send_group(self, group: list[Dataset], port: int) -> None:
        ae = AE(ae_title="STORESCU")
        for syntax in {str(ds.file_meta.TransferSyntaxUID) for ds in group}:
            for sop_class in {str(ds.SOPClassUID) for ds in group}:
                ae.add_requested_context(sop_class, syntax)
        assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
        if not assoc.is_established:
            return
        try:
            for ds in group:
                try:
                    status = assoc.send_c_store(ds)
                except RuntimeError:  # the listener went away mid-burst: the rest is unsent
                    return
                if "Status" in status and int(status.Status) == 0:
                    self.acknowledged.add(str(ds.SOPInstanceUID))
        finally:
            if assoc.is_established:
                assoc.release()

    def versions(self) -> list:
        """Every version's id, study, number, state and reason, oldest first."""
        with self.database.reading() as session:
            query = select(
                StudyVersion.id,
                StudyVersion.study_id,
                StudyVersion.number,
                StudyVersion.state,
                StudyVersion.reason,
            )
            return list(session.execute(query.order_by(StudyVersion.id)).all())

    def settled(self) -> bool:
        """Every version final and no result object still waiting for the PACS."""
        with self.database.reading() as session:
            states = list(session.scalars(select(StudyVersion.state)))
            waiting = session.scalars(
                select(Delivery.id).where(Delivery.state == DeliveryState.PENDING)
            ).first()
        return bool(states) and all(s in invariants.FINAL for s in states) and waiting is None

    def kill(self, process) -> None:
        """SIGKILL a triage process and its children (a worker's prefork pool), as the OOM killer would."""
        self.signal(process, signal.SIGKILL)
        process.wait(30)

    def signal(self, process, number: int) -> None:
        """Send a signal to a triage process and its children (SIGSTOP: a hung process, SIGCONT)."""
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        except FileNotFoundError:
            children = []
        for pid in [process.pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def last_errors(self) -> str:
        with self.database.reading() as session:
            return " | ".join(session.scalars(select(Delivery.last_error)))

    def tries(self) -> int:
        with self.database.reading() as session:
            return max(session.scalars(select(Delivery.attempts)), default=0)

    def log_says(self, command: str, words: str) -> int:
        """How many times ``words`` appear in the logs of this site's ``command`` processes."""
        return sum(
            log.read_text(errors="replace").count(words) for log in self.folder.glob(f"{command}-*.log")
        )

    def check(self) -> list[invariants.Finding]:
        wait_until(self._forwarded, timeout=90, interval=0.5)  # the forwarder runs every few seconds
        return invariants.check(
            self.database, self.settings.storage_dir, self.acknowledged, self.pacs, self.database.now(),
            self.collector.sequence_ids(),
        )  # fmt: skip

    def _forwarded(self) -> bool:
        with self.database.reading() as session:
            ids = {invariants.sequence_id(i) for i in session.scalars(select(AuditEvent.id))}
        return ids <= set(self.collector.sequence_ids())

    def notes_at_the_pacs(self) -> list:
        """The key object notes (IOCM rejection notes) Orthanc holds."""
        assert self.pacs is not None
        return self.pacs.request("POST", "/tools/find", {"Level": "Instance", "Query": {"Modality": "KO"}})

    def received_by_storescp(self, prefix: str) -> list[Path]:
        """The files storescp wrote for a modality prefix ("SC", "SR", "KO")."""
        return sorted(self.received.glob(f"{prefix}*.*"))  # DCMTK writes "SRd." for an SR document

    def close(self) -> None:
        for process in (self.worker, self.listener):
            stop(process)
        if self.pacs is not None:
            self.pacs.stop()
        if self.storescp is not None:
            stop(self.storescp)
        self.collector.stop()
        self.database.dispose()


@pytest.fixture
def site(tmp_path, make_settings, request) -> Iterator[Site]:
    """A site; a scenario's ``env`` marker (pytest.mark.env(NAME="value")) sets its processes' settings,
    its ``storescp`` marker (pytest.mark.storescp("--abort-after")) makes storescp the PACS."""
    marker, pacs = request.node.get_closest_marker("env"), request.node.get_closest_marker("storescp")
    found = Site(tmp_path, make_settings, marker.kwargs if marker else None, pacs.args if pacs else ())
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def verdict(request):
    """Record a scenario's figure; the invariants are checked by the scenario itself (``holds``)."""
    started = time.monotonic()

    def record(site: Site, figure: str) -> None:
        findings = site.check()
        broken = [f"invariant {f.invariant}: {f.detail}" for f in findings if not f.holds]
        elapsed = time.monotonic() - started
        ROWS.append((request.node.name, not broken, f"{figure}; {elapsed:.0f} s"))
        assert not broken, broken

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not ROWS:
        return
    terminalreporter.write_sep("=", "acceptance: scenario, pass or fail, its figure")
    for name, passed, figure in ROWS:
        terminalreporter.write_line(f"{name:<52} {'pass' if passed else 'FAIL':<5} {figure}")


@pytest.fixture
def private_postgres() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL, for one scenario, dropped afterwards."""
    from bench.worklist import scratch_database

    with scratch_database(f"triage_acceptance_{os.getpid()}_{time.monotonic_ns()}") as url:
        yield url


@pytest.fixture
def movable_clock_postgres(tmp_path) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL server of its own whose clock a test moves: it runs under libfaketime reading
    its offset from a file ("+2h", "-2h"), so the database clock steps as an NTP step or an
    operator would move it. Yields the URL and the file."""
    import glob
    import shutil as files

    if os.geteuid() != 0:
        pytest.fail("this scenario runs PostgreSQL as the postgres user and needs root (CI runs as root)")
    binaries = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    folder = Path(tempfile.mkdtemp(prefix="triage-pg-clock-"))
    files.chown(folder, "postgres")
    clock = folder / "clock"
    clock.write_text("+0\n")
    clock.chmod(0o644)
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)  # fmt: skip
    library = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
    assert library.exists(), "libfaketime is not installed: run 'make peers' (make test does)"
    faked = ["env", f"LD_PRELOAD={library}",
             f"FAKETIME_TIMESTAMP_FILE={clock}", "FAKETIME_NO_CACHE=1"]  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_postgres, *faked, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-o", options,
                    "-l", str(folder / "log"), "-w", "start"], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", clock
    finally:
        subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate",
                        "stop"], check=False, capture_output=True)  # fmt: skip
        files.rmtree(folder, ignore_errors=True)
