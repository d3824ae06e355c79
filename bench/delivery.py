"""Completion -> PACS acknowledgement latency, on embedded defaults, with Orthanc as the PACS.

Sends phantom trauma studies (3 DX) and four-view screens one after another, one every
``--spacing`` seconds (a busy emergency department sends one every few minutes), and reports p50
and p95 of the time from a study being judged complete to Orthanc acknowledging its SR.
Target: p95 <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from sqlalchemy import select

from bench import record
from delivery import pacs as delivery
from dicom_node.listener import Listener
from testkit import phantoms, synthetic
from testkit.peers import REPO, Orthanc, free_port, start_triage, stop, storescu, wait_until
from triage.records.tables import Delivery, StudyState, StudyVersion
from triage.settings import load_settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=20, help="of each kind")
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between studies")
    parser.add_argument("--size", type=int, default=1024, help="phantom matrix (rows = columns)")
    args = parser.parse_args()
    figures = run(args.studies, args.spacing, args.size)
    print(json.dumps(figures))
    record("delivery", figures)


def run(studies: int, spacing: float, size: int) -> dict[str, dict[str, float]]:
    """Send ``studies`` of each kind, one every ``spacing`` seconds; p50 and p95 per kind."""
    work = Path(tempfile.mkdtemp(prefix="triage-bench-delivery-"))
    routing = yaml.safe_load((REPO / "configs" / "routing.yaml").read_text())
    routing["pipelines"]["fracture"]["quiet_period_seconds"] = (
        1.0  # a trauma series: complete 1 s after it ends
    )
    (work / "routing.yaml").write_text(yaml.safe_dump(routing))
    port = free_port()
    pacs = Orthanc(work / "orthanc", {"triage": ("TRIAGE", "127.0.0.1", port)})
    settings = load_settings(
        home=work / "home",
        dicom_port=port,
        allowed_calling_aes="STORESCU",
        routing_file=work / "routing.yaml",
        pacs=f"ORTHANC@127.0.0.1:{pacs.dicom_port}",
        monitor_interval_seconds=0.1,
    )
    listener = Listener(settings)
    listener.start()
    senders = delivery.start(settings, listener.database)
    worker = start_triage("worker", settings, work / "worker.log")
    try:
        kinds = {}
        for index in range(2 * studies):
            screen = index % 2 == 1
            datasets = (
                phantoms.screen("L" if index % 6 == 1 else None, seed=index, size=size)
                if screen
                else phantoms.trauma_study(index % 4 == 0, seed=index, size=size, images=3)
            )
            kinds[datasets[0].StudyInstanceUID] = "screen" if screen else "trauma"
            result = storescu(port, *synthetic.write(datasets, work / "send" / str(index)))
            if result.returncode != 0:
                raise RuntimeError(result.stderr)
            time.sleep(spacing)

        def all_reported() -> bool:
            with listener.database.session() as session:
                states = list(session.scalars(select(StudyVersion.state)))
            return len(states) == 2 * studies and all(s == StudyState.REPORTED for s in states)

        wait_until(all_reported, timeout=600, interval=0.5)
        latencies: dict[str, list[float]] = {"trauma": [], "screen": []}
        with listener.database.session() as session:
            for version in session.scalars(select(StudyVersion)):
                sr = session.scalars(
                    select(Delivery).where(Delivery.version_id == version.id, Delivery.kind == "sr")
                ).one()
                assert sr.delivered_at is not None and version.completed_at is not None
                seconds = (sr.delivered_at - version.completed_at).total_seconds()
                latencies[kinds[version.study.study_instance_uid]].append(seconds)
        print(f"delivery: completion -> Orthanc acknowledged the SR, one study every {spacing:g} s, CPU")
        for kind, values in latencies.items():
            print(
                f"  {kind:7s} n={len(values)}  p50 {percentile(values, 50):.2f} s  "
                f"p95 {percentile(values, 95):.2f} s  (target p95 <= 3 s)"
            )
        return {k: {"p50_s": percentile(v, 50), "p95_s": percentile(v, 95)} for k, v in latencies.items()}
    finally:
        stop(worker)
        for sender in senders:
            sender.stop()
        listener.stop()
        pacs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
