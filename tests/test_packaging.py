"""A wheel built from the repository starts the service from any directory, on its bundled models."""

import json
import os
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from testkit import phantoms, synthetic
from testkit.peers import REPO, free_port, require_tool, stop, storescu, wait_until
from triage.records.db import Database
from triage.records.tables import Result

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; its dependencies are the test environment's, read from a
    path entry (not a site directory, so the source tree's editable install stays out of it)."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", folder, REPO],
        check=True,
        capture_output=True,
    )
    [wheel] = folder.glob("triage-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        check=True,
        capture_output=True,
    )
    return venv


def test_the_installed_package_is_the_wheel_not_the_source_tree(installed, tmp_path):
    code = "import triage, triage.settings as s; print(triage.__file__); print(s.Settings().models_dir)"
    result = subprocess.run(
        [installed / "bin" / "python", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    package, models = result.stdout.splitlines()
    assert package.startswith(str(installed)), package
    assert models == str(installed / "share" / "triage" / "models")


def test_triage_serve_from_another_directory_analyses_a_study_with_the_bundled_model(installed, tmp_path):
    dicom_port, api_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DICOM_PORT=str(dicom_port),
        TRIAGE_API_PORT=str(api_port),
        TRIAGE_ALLOWED_CALLING_AES="STORESCU",
        TRIAGE_MONITOR_INTERVAL_SECONDS="0.1",
        TCP_NODELAY="1",
    )
    require_tool("storescu")
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [installed / "bin" / "triage", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        paths = synthetic.write(phantoms.screen("L", seed=3), tmp_path / "send")
        wait_until(lambda: storescu(dicom_port, *paths).returncode == 0, timeout=60, interval=1)
        database = Database(f"sqlite:///{tmp_path / 'var' / 'triage.db'}")

        def summary():
            with database.session() as session:
                return session.scalar(select(Result.summary))

        assert wait_until(summary, timeout=180).endswith("[model triage-breast-demo 1.0.0]")
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=5) as response:
            assert json.load(response)["status"] == "ok"
        database.dispose()
    finally:
        stop(serve)
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
