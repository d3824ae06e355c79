"""The inference bench's smoke run: tiny phantoms, seconds, every figure produced."""

from bench import inference


def test_the_inference_bench_gives_its_figures():
    figures = inference.run(studies=2, size=256)
    assert set(figures) == {"trauma_3_images", "screen_4_views"}
    for found in figures.values():
        assert found["raw_images_per_s"] > 0 and found["pipeline_images_per_s"] > 0
        assert found["torch_raw_images_per_s"] > 0 and found["served_over_torch"] > 0
        assert 0 < found["p50_ms"] <= found["p95_ms"]
