"""The bundled networks served through ONNX Runtime on the CPU give the torch networks' answers on
real images (FracAtlas radiographs, mini-MIAS mammograms), from an export cached per weights."""

import pytest
import torch

from inference.model import load_model
from inference.transforms import prepare
from testkit.peers import REPO
from tests.inference.test_model import DATASETS, FOLDERS, MODELS
from training.config import load_config
from training.train import load_data, split

TOLERANCE = 1e-4  # float32 both ways; measured differences are about 6e-6


def real_inputs(pipeline, count=6):
    config = load_config(REPO / "configs" / "train" / f"{pipeline}.yaml")
    _, _, test = split(config, load_data(config, DATASETS / FOLDERS[config.dataset]).samples)
    return [prepare(s.load(), s.meta, config.input_size) for s in test[:count]]


@pytest.mark.parametrize("pipeline", ["fracture", "breast"])
def test_onnx_runtime_answers_as_torch_does(pipeline, tmp_path):
    torch.set_num_threads(1)
    eager = load_model(MODELS / pipeline, torch.device("cpu"))
    served = load_model(MODELS / pipeline, torch.device("cpu"), tmp_path / "onnx")
    assert eager.runner is None and served.runner is not None
    inputs = real_inputs(pipeline)
    for expected, found in zip(eager.predict(inputs), served.predict(inputs), strict=True):
        assert found.probability == pytest.approx(expected.probability, abs=TOLERANCE)
        assert len(found.detections) == len(expected.detections)
        for a, b in zip(expected.detections, found.detections, strict=True):
            assert (b.x0, b.y0, b.x1, b.y1) == pytest.approx((a.x0, a.y0, a.x1, a.y1), abs=0.5)
            assert b.score == pytest.approx(a.score, abs=TOLERANCE)


def test_the_export_is_made_once_per_weights_and_kept(tmp_path):
    cache = tmp_path / "onnx"
    first = load_model(MODELS / "fracture", torch.device("cpu"), cache)
    [exported] = cache.glob("*.onnx")
    assert exported.name.startswith(first.card.weights_sha256), "other weights never reuse it"
    written = exported.stat().st_mtime_ns
    load_model(MODELS / "fracture", torch.device("cpu"), cache)
    assert exported.stat().st_mtime_ns == written and list(cache.iterdir()) == [exported]


def test_the_cpu_serves_through_onnx_runtime_unless_told(make_settings):
    assert make_settings(onnx_cache=None).onnx_cache_dir == make_settings().home / "cache" / "onnx"
    assert make_settings(cpu_serving="torch").onnx_cache_dir is None
