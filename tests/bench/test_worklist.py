"""The worklist bench's smoke run, which is also the regression test for a region's history: past
65,535 study versions the queue page passed PostgreSQL's bind-parameter limit and answered 500."""

import pytest

from bench import worklist
from worklist.views import Queue

pytestmark = pytest.mark.integration


def test_every_page_answers_past_the_bind_parameter_limit_and_the_bench_gives_its_figures():
    figures = worklist.run(small=300, large=70_000, repeats=1)  # each page must answer 200, or it raises
    assert set(figures) == {f"queue {q}" for q in Queue} | {"study page", "metrics"}
    for name, found in figures.items():
        assert found["small_s"] > 0 and found["large_s"] > 0, name
        assert found["ratio"] == found["large_s"] / found["small_s"]
