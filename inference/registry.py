"""The MLflow model registry: register a trained model with its card, promote, roll back, fetch.

Each pipeline has one registered model (``triage-fracture``, ``triage-breast``). A version's
artifacts are the model folder (``card.json`` + weights); the alias ``production`` names the
version the service runs, and the registered model's tag ``triage.promotions`` keeps the order of
promotions so that a rollback returns to the one before. Workers fetch the production version into
``<home>/models-cache`` and verify it like a bundled model (SHA-256 against the card).

mlflow is imported inside the functions: the listener and the API never need it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.cards import ModelCard, read_card
from triage.pipelines import Pipeline
from triage.settings import Settings

logger = logging.getLogger(__name__)

PRODUCTION = "production"
SHADOW = "shadow"  # a candidate run beside production on live studies, never routed or sent
_HISTORY_TAG = "triage.promotions"
_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# What a card must have measured on held-out data for its operating points to count as validated.
VALIDATED_BY = {
    Pipeline.FRACTURE: (
        "sensitivity_at_doubt",
        "specificity_at_doubt",
        "sensitivity_at_fracture",
        "specificity_at_fracture",
    ),
    Pipeline.BREAST: ("exam_auroc",),
}


class PromotionRefused(Exception):
    """A version cannot be promoted or rolled back as asked; the message says why."""


def registered_name(pipeline: str) -> str:
    return Pipeline(pipeline).registered_name


def client(settings: Settings) -> Any:
    """An MlflowClient on the configured store (SQLite under home unless told otherwise)."""
    from mlflow import MlflowClient

    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    # MLflow's own defaults (7 retries with backoff, 120 s per request) keep a worker waiting for
    # minutes on an MLflow server that is down; a study must not. An operator's values still win.
    for variable, value in _HTTP_LIMITS.items():
        os.environ.setdefault(variable, value)
    uri = settings.resolved_mlflow_tracking_uri
    # The client only: mlflow.set_tracking_uri() would also write MLFLOW_TRACKING_URI into this
    # process's environment, which the settings read.
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registry_in_use(settings: Settings) -> bool:
    """Whether there can be promoted models: a configured store, or the local one exists."""
    return settings.mlflow_tracking_uri is not None or (settings.mlflow_dir / "mlflow.db").is_file()


def experiment_id(settings: Settings, pipeline: str) -> str:
    """The pipeline's experiment, created with its artifacts under home for the local store."""
    mlflow_client = client(settings)
    name = f"triage-{pipeline}"
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (
        None if settings.mlflow_tracking_uri else (settings.mlflow_dir / "artifacts").resolve().as_uri()
    )
    return str(mlflow_client.create_experiment(name, artifact_location=location))


def validation_gaps(card: ModelCard) -> list[str]:
    """What a card lacks for its operating points to count as validated (empty: nothing)."""
    gaps = [f"no held-out {name}" for name in VALIDATED_BY[card.pipeline] if name not in card.metrics]
    gaps += [f"{name} measured on no cases" for name, metric in card.metrics.items() if metric.n == 0]
    return gaps


def register(settings: Settings, folder: Path, run_id: str) -> str:
    """Register a model folder logged as the run's ``model`` artifacts; return the new version.

    Raises:
        PromotionRefused: a registered version already has this card's version string.
    """
    card = read_card(folder)
    mlflow_client = client(settings)
    name = registered_name(card.pipeline)
    if not mlflow_client.search_registered_models(f"name='{name}'"):
        mlflow_client.create_registered_model(name, description=f"triage {card.pipeline} models")
    for existing in mlflow_client.search_model_versions(f"name='{name}'"):
        if existing.tags.get("card.version") == card.version:
            raise PromotionRefused(
                f"{name} version {existing.version} already has card version {card.version}: "
                "every result names the model version, so give the new one its own"
            )
    version = mlflow_client.create_model_version(
        name,
        f"runs:/{run_id}/model",
        run_id=run_id,
        tags={"card.name": card.name, "card.version": card.version, "weights_sha256": card.weights_sha256},
        description=card.held_out,
    )
    return str(version.version)


@dataclass(frozen=True)
class VersionInfo:
    pipeline: str
    version: str
    card_name: str
    card_version: str
    aliases: tuple[str, ...]
    validated: bool
    run_id: str


def fetch(settings: Settings, pipeline: str, version: str) -> Path:
    """The model folder of a registered version, downloaded once into the cache."""
    folder = settings.home / "models-cache" / registered_name(pipeline) / version
    if (folder / "card.json").is_file():
        return folder
    mlflow_client = client(settings)
    run_id = mlflow_client.get_model_version(registered_name(pipeline), version).run_id
    partial = folder.with_name(f"{version}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    downloaded = Path(mlflow_client.download_artifacts(run_id, "model", str(partial)))
    downloaded.replace(folder)
    shutil.rmtree(partial, ignore_errors=True)
    return folder


def versions(settings: Settings) -> list[VersionInfo]:
    """Every registered version of every pipeline, newest first."""
    mlflow_client = client(settings)
    found = []
    for pipeline in VALIDATED_BY:
        name = registered_name(pipeline)
        # search results carry no aliases in every store: ask for the two we use
        aliases = {alias: _alias(settings, pipeline, alias) for alias in (PRODUCTION, SHADOW)}
        for version in mlflow_client.search_model_versions(f"name='{name}'"):
            card = read_card(fetch(settings, pipeline, str(version.version)))
            found.append(
                VersionInfo(
                    pipeline=pipeline,
                    version=str(version.version),
                    card_name=card.name,
                    card_version=card.version,
                    aliases=tuple(a for a, v in aliases.items() if v == str(version.version)),
                    validated=not validation_gaps(card),
                    run_id=str(version.run_id),
                )
            )
    return sorted(found, key=lambda v: (v.pipeline, -int(v.version)))


def _alias(settings: Settings, pipeline: str, alias: str) -> str | None:
    """The version an alias names; None when the model or the alias does not exist.

    Raises:
        MlflowException: the registry could not be read (a server that is down): never taken to
            mean "nothing promoted", which would quietly switch the service back to the bundled model.
    """
    from mlflow.exceptions import MlflowException

    if not registry_in_use(settings):
        return None
    try:
        return str(client(settings).get_model_version_by_alias(registered_name(pipeline), alias).version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def production(settings: Settings, pipeline: str) -> str | None:
    """The registered version the alias ``production`` names, or None (the bundled model runs)."""
    return _alias(settings, pipeline, PRODUCTION)


def shadow(settings: Settings, pipeline: str) -> str | None:
    """The registered version in shadow mode, or None."""
    return _alias(settings, pipeline, SHADOW)


def set_shadow(settings: Settings, pipeline: str, version: str | None) -> None:
    """Put ``version`` in shadow mode (None: end shadow mode). Validation is not asked: its results
    reach no one."""
    mlflow_client = client(settings)
    name = registered_name(pipeline)
    if version is None:
        if shadow(settings, pipeline) is not None:
            mlflow_client.delete_registered_model_alias(name, SHADOW)
        return
    fetch(settings, pipeline, version)  # fails now, not in the worker, if it cannot be fetched
    mlflow_client.set_registered_model_alias(name, SHADOW, version)


def _history(mlflow_client: Any, name: str) -> list[str]:
    model = mlflow_client.get_registered_model(name)
    return list(json.loads(model.tags.get(_HISTORY_TAG, "[]")))


def promote(settings: Settings, pipeline: str, version: str) -> str | None:
    """Point ``production`` at ``version``; return the version it named before (None: bundled).

    Raises:
        PromotionRefused: no such version, or its card lacks validated operating points.
    """
    card = read_card(fetch(settings, pipeline, version))
    gaps = validation_gaps(card)
    if gaps:
        raise PromotionRefused(
            f"{registered_name(pipeline)} version {version} ({card.name} {card.version}) has no validated "
            f"operating points: {'; '.join(gaps)}. Run 'triage calibrate' on a held-out set first."
        )
    mlflow_client = client(settings)
    name = registered_name(pipeline)
    before = production(settings, pipeline)
    history = [*_history(mlflow_client, name), version]
    mlflow_client.set_registered_model_alias(name, PRODUCTION, version)
    mlflow_client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history[-50:]))
    return before


def rollback(settings: Settings, pipeline: str) -> tuple[str, str | None]:
    """Return ``production`` to the version promoted before the current one (or to the bundled
    model when there was none). Returns (the version left, the version now in production)."""
    mlflow_client = client(settings)
    name = registered_name(pipeline)
    history = _history(mlflow_client, name)
    current = production(settings, pipeline)
    if current is None or not history:
        raise PromotionRefused(f"nothing to roll back: no version of {name} is in production")
    history = history[:-1]
    if history:
        mlflow_client.set_registered_model_alias(name, PRODUCTION, history[-1])
    else:
        mlflow_client.delete_registered_model_alias(name, PRODUCTION)
    mlflow_client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history))
    return current, (history[-1] if history else None)


def resolve(settings: Settings, text: str) -> Path:
    """A model folder from a path, ``PIPELINE@ALIAS`` (e.g. fracture@production) or ``PIPELINE/VERSION``.

    Raises:
        ValueError: the text names no folder and no registered version.
    """
    from mlflow.exceptions import MlflowException

    if Path(text).is_dir():
        return Path(text)
    pipeline, sep, rest = text.replace("@", "/@", 1).partition("/")
    if not sep or pipeline not in VALIDATED_BY:
        raise ValueError(f"{text!r} is not a model folder, PIPELINE@ALIAS or PIPELINE/VERSION")
    try:
        if rest.startswith("@"):
            version = client(settings).get_model_version_by_alias(registered_name(pipeline), rest[1:]).version
        else:
            version = client(settings).get_model_version(registered_name(pipeline), rest).version
    except MlflowException as error:
        raise ValueError(f"{text!r}: no such registered model version ({error.message})") from error
    return fetch(settings, pipeline, str(version))
