"""Ingest benchmark: triage's listener (durability on) against Orthanc and DCMTK storescp.

One run, same 200 DX instances (2048 x 2048, 16-bit), each peer receiving them from one storescu
association over loopback with Nagle off (TCP_NODELAY=1: DCMTK and Orthanc leave Nagle's algorithm on
by default, which caps them far below their real speed, so the comparison is fair only without it).
Then the listener's peak memory (VmHWM) while it receives one instance of 1 GiB.
Prints figures and ratios; asserts nothing (targets are read by people, not by CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from bench import record
from testkit import synthetic
from testkit.peers import REPO, Orthanc, free_port, require_tool, wait_until

ENV = {**os.environ, "TCP_NODELAY": "1"}


def make_instances(folder: Path, count: int, rows: int, columns: int) -> list[Path]:
    """Write ``count`` DX instances of one study that share pixel data but not UIDs."""
    template = synthetic.dx(rows=rows, columns=columns, bits=16)
    ids = synthetic.StudyIds()
    template.StudyInstanceUID, template.SeriesInstanceUID = ids.study_instance_uid, ids.series_instance_uid
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        uid = generate_uid()
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = uid
        template.InstanceNumber = number + 1
        path = folder / f"{number:04d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send(port: int, paths: list[Path], called: str) -> float:
    """Send ``paths`` with one storescu association; return the seconds it took."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            require_tool("storescu"),
            "-aet",
            "STORESCU",
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, paths),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"storescu to {called} failed: {result.stderr[-2000:]}")
    return elapsed


def start_triage(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in ENV.items() if not k.startswith("TRIAGE_")}
    env.update(TRIAGE_HOME=str(home), TRIAGE_DICOM_PORT=str(port), TRIAGE_ALLOWED_CALLING_AES="STORESCU")
    log = (home.parent / f"{home.name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "triage", "listener"], env=env, stdout=log, stderr=log, cwd=REPO
    )
    wait_until(
        lambda: (
            subprocess.run(
                [require_tool("echoscu"), "-aec", "TRIAGE", "-aet", "STORESCU", "127.0.0.1", str(port)],
                env=ENV,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        ),
        timeout=60,
        interval=0.2,
    )
    return process


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def bench_triage(work: Path, paths: list[Path]) -> float:
    port = free_port()
    process = start_triage(work / "triage-home", port)
    try:
        return send(port, paths, "TRIAGE")
    finally:
        process.terminate()
        process.wait(30)


def bench_orthanc(work: Path, paths: list[Path]) -> float:
    pacs = Orthanc(work / "orthanc", {})
    try:
        return send(pacs.dicom_port, paths, "ORTHANC")
    finally:
        pacs.stop()


def bench_storescp(work: Path, paths: list[Path]) -> float:
    port = free_port()
    out = work / "storescp"
    out.mkdir()
    process = subprocess.Popen(
        [require_tool("storescp"), "-od", str(out), "+xa", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: (
                subprocess.run(
                    [require_tool("echoscu"), "127.0.0.1", str(port)],
                    env=ENV,
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ),
            timeout=30,
            interval=0.2,
        )
        return send(port, paths, "ANY-SCP")
    finally:
        process.terminate()
        process.wait(30)


def bench_memory(work: Path, gib: float) -> tuple[float, float, int]:
    """Peak RSS of the listener before and after receiving one instance of about ``gib`` GiB."""
    columns = 16384
    rows = int(gib * (1 << 30) / (columns * 2))
    [path] = make_instances(work / "large", 1, rows, columns)
    size = path.stat().st_size
    port = free_port()
    process = start_triage(work / "triage-large", port)
    try:
        before = peak_rss_mib(process.pid)
        send(port, [path], "TRIAGE")
        return before, peak_rss_mib(process.pid), size
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=2048, help="rows and columns of each DX")
    parser.add_argument("--large-gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3, help="runs per peer; the median is reported")
    args = parser.parse_args()
    figures = run(args.count, args.size, args.large_gib, args.runs)
    print(json.dumps(figures))
    record("ingest", figures)


def run(count: int, size: int, large_gib: float, runs: int = 3) -> dict[str, object]:
    """Each peer receives the same instances ``runs`` times, interleaved; the medians, their ratios,
    and the listener's peak memory for one large instance. Returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    try:
        paths = make_instances(work / "dx", count, size, size)
        total_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"ingest: {count} DX {size}x{size} 16-bit, {total_mb:.0f} MB, one storescu association, "
            f"TCP_NODELAY=1, median of {runs} interleaved runs, files under {work}"
        )
        peers = (("storescp", bench_storescp), ("orthanc", bench_orthanc), ("triage", bench_triage))
        folders = {"storescp": "storescp", "orthanc": "orthanc", "triage": "triage-home"}
        found: dict[str, list[float]] = {name: [] for name, _ in peers}
        for _ in range(runs):  # interleaved, so that a noisy minute touches every peer alike
            for name, bench in peers:
                found[name].append(bench(work, paths))
                shutil.rmtree(work / folders[name], ignore_errors=True)
        rate = {name: total_mb / statistics.median(times) for name, times in found.items()}
        for name in rate:
            print(
                f"  {name:9s} {rate[name]:8.1f} MB/s  (runs: {', '.join(f'{t:.2f} s' for t in found[name])})"
            )
        ratios = {"triage_over_orthanc": rate["triage"] / rate["orthanc"],
                  "triage_over_storescp": rate["triage"] / rate["storescp"]}  # fmt: skip
        print(f"  triage / orthanc  = {ratios['triage_over_orthanc']:.2f}x  (target >= 1.5x)")
        print(f"  triage / storescp = {ratios['triage_over_storescp']:.2f}x  (target >= 0.5x)")
        before, peak, large = bench_memory(work, large_gib)
        print(
            f"memory: one {large / (1 << 30):.2f} GiB instance: listener peak RSS {before:.0f} MiB "
            f"before, {peak:.0f} MiB after (target < 300 MiB)"
        )
        return {"mb_per_s": rate, "ratios": ratios, "peak_rss_mib": peak, "large_instance_bytes": large}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
