"""The delivery bench's smoke run: one study of each kind through listener, worker and Orthanc."""

import pytest

from bench import delivery

pytestmark = pytest.mark.integration


def test_the_delivery_bench_gives_its_figures():
    figures = delivery.run(studies=1, spacing=0.0, size=256)
    assert set(figures) == {"trauma", "screen"}
    assert all(0 < found["p50_s"] <= found["p95_s"] for found in figures.values())
