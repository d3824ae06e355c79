import pytest

from inference.model import ModelUnavailable
from inference.worker import ModelPipelines, threads_per_process


def test_each_model_loads_once_per_process(make_settings):
    pipelines = ModelPipelines(make_settings())
    first = pipelines["fracture"]
    assert pipelines["fracture"] is first
    assert first.identity.name == "triage-fracture-lite0"


def test_a_missing_model_folder_is_unavailable_not_a_crash(make_settings, tmp_path):
    pipelines = ModelPipelines(make_settings(models_dir=tmp_path))
    with pytest.raises(ModelUnavailable, match="no model folder"):
        pipelines["breast"]
    with pytest.raises(KeyError):
        pipelines["cardiac"]


def test_threads_are_shared_out_between_worker_processes(make_settings):
    assert threads_per_process(make_settings(), concurrency=4, cpus=8) == 2
    assert threads_per_process(make_settings(), concurrency=16, cpus=8) == 1
    assert threads_per_process(make_settings(worker_threads=3), concurrency=4, cpus=8) == 3
