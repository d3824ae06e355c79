"""Inference benchmark on the bundled models, CPU (or GPU when present), one run, same inputs.

Prints: raw model forward images/s on already prepared inputs, as the service serves it (ONNX
Runtime on the CPU) and through eager torch, with their ratio (target >= 2x); the pipeline's
images/s from DICOM file in storage to result (target >= 0.9x raw); per-study latency p50/p95 for a
3-image trauma study and a 4-view screen. Inputs are phantom studies at clinical matrix sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench import record
from inference.breast import BreastPipeline
from inference.fracture import FracturePipeline
from inference.inputs import read_study
from inference.model import load_model, pick_device
from inference.transforms import prepare
from testkit import phantoms
from testkit.peers import REPO
from testkit.synthetic import store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def raw_rate(model, prepared, images_per_study: int) -> float:
    """Images/s of the network as the card says to run it (test-time flip included)."""
    model.predict(prepared[0])  # warm-up
    started = time.perf_counter()
    for inputs in prepared:
        model.predict(inputs)
    return len(prepared) * images_per_study / (time.perf_counter() - started)


def bench(name: str, pipeline, payloads, models, images_per_study: int, storage: Path) -> dict[str, float]:
    """The raw forward on prepared inputs, as served and in eager torch, against the pipeline from
    stored DICOM (read, decode, prepare, forward, decide) on the same studies."""
    model, eager = models
    pipeline(payloads[0], read_study(payloads[0], storage))  # warm-up: first call allocates
    prepared = [
        [prepare(i.pixels, i.facts, model.card.input_size) for i in read_study(p, storage).images]
        for p in payloads
    ]
    raw = raw_rate(model, prepared, images_per_study)
    torch_raw = raw_rate(eager, prepared, images_per_study)
    latencies = []
    started = time.perf_counter()
    for payload in payloads:
        t = time.perf_counter()
        pipeline(payload, read_study(payload, storage))
        latencies.append(time.perf_counter() - t)
    end_to_end = len(payloads) * images_per_study / (time.perf_counter() - started)
    p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
    serving = "ONNX Runtime" if model.runner is not None else "torch"
    print(
        f"  {name:8s} raw forward {raw:6.1f} img/s ({serving}; eager torch {torch_raw:6.1f}, "
        f"{raw / torch_raw:.2f}x, target >= 2x) | pipeline {end_to_end:6.1f} img/s "
        f"({end_to_end / raw:.2f}x raw, target >= 0.9x) | study latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    )
    return {
        "raw_images_per_s": raw,
        "torch_raw_images_per_s": torch_raw,
        "served_over_torch": raw / torch_raw,
        "pipeline_images_per_s": end_to_end,
        "p50_ms": p50,
        "p95_ms": p95,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="phantom matrix (rows = columns)")
    args = parser.parse_args()
    figures = run(args.studies, args.size)
    print(json.dumps(figures))
    record("inference", figures)


def run(studies: int, size: int) -> dict[str, dict[str, float]]:
    """Both pipelines on ``studies`` phantom studies each at ``size`` x ``size``; their figures."""
    device = pick_device()
    print(
        f"inference: {studies} studies each, phantoms {size}x{size}, device {device}, "
        f"{torch.get_num_threads()} torch threads"
    )
    work = Path(tempfile.mkdtemp(prefix="triage-bench-inference-"))
    try:
        # As the worker serves them (ONNX Runtime on the CPU), and in eager torch for the ratio.
        fracture, breast = (
            load_model(REPO / "models" / p, device, work / "onnx") for p in ("fracture", "breast")
        )
        eager = {p: load_model(REPO / "models" / p, device) for p in ("fracture", "breast")}
        trauma = [
            store(phantoms.trauma_study(i % 2 == 0, seed=i, size=size, images=3), work, "fracture")
            for i in range(studies)
        ]
        screens = [
            store(phantoms.screen("L" if i % 3 == 0 else None, seed=i, size=size), work, "breast")
            for i in range(studies)
        ]
        return {
            "trauma_3_images": bench(
                "trauma", FracturePipeline(fracture), trauma, (fracture, eager["fracture"]), 3, work
            ),
            "screen_4_views": bench(
                "screen", BreastPipeline(breast, 5), screens, (breast, eager["breast"]), 4, work
            ),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
