"""The ingest bench's smoke run: a few small instances per peer, every figure produced."""

import pytest

from bench import ingest

pytestmark = pytest.mark.integration


def test_the_ingest_bench_gives_its_figures():
    figures = ingest.run(count=4, size=128, large_gib=0.01, runs=1)
    assert set(figures["mb_per_s"]) == {"storescp", "orthanc", "triage"}
    assert all(rate > 0 for rate in figures["mb_per_s"].values())
    assert figures["ratios"]["triage_over_orthanc"] > 0 and 0 < figures["peak_rss_mib"] < 4096
