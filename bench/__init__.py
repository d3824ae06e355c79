"""`make bench`: figures and ratios against a peer measured in the same run, printed and recorded in
``bench.json`` at the repository's root (one entry per bench, replaced by its next run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BENCH_JSON = Path(__file__).resolve().parents[1] / "bench.json"


def record(name: str, figures: Any) -> None:
    """Keep ``figures`` as bench.json's entry ``name``."""
    recorded = json.loads(BENCH_JSON.read_text()) if BENCH_JSON.exists() else {}
    recorded[name] = figures
    BENCH_JSON.write_text(json.dumps(recorded, indent=2) + "\n")
