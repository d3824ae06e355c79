"""Real peers and helpers shared by the tests and the benchmarks: DCMTK tools, a private Orthanc,
``triage`` subprocesses, ports and polling. Never imported by the service."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from triage.settings import Settings

REPO = Path(__file__).resolve().parent.parent
# DCMTK leaves Nagle's algorithm on unless told; without this, loopback tests crawl.
PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {predicate}")


def require_tool(name: str) -> str:
    """Return the path of a peer tool that ``make test`` installs; fail loudly when missing."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: run 'make peers' (make test does)"
    return path


def storescu(
    port: int,
    *paths: Path,
    calling: str = "STORESCU",
    called: str = "TRIAGE",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Send files with DCMTK's storescu; returns the finished process (check its returncode)."""
    return subprocess.run(
        [
            require_tool("storescu"),
            "-aet",
            calling,
            "-aec",
            called,
            *extra,
            "127.0.0.1",
            str(port),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        env=PEER_ENV,
        timeout=120,
        check=False,
    )


def triage_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a ``triage`` subprocess build the same settings as ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIAGE_")}
    env.update(
        TRIAGE_HOME=str(settings.home),
        TRIAGE_DATABASE_URL=settings.resolved_database_url,
        TRIAGE_ROUTING_FILE=str(settings.routing_file),
        TRIAGE_ALLOWED_CALLING_AES=",".join(settings.allowed_calling_aes),
        TRIAGE_DICOM_PORT=str(settings.dicom_port),
        TRIAGE_API_PORT=str(settings.api_port),
        TRIAGE_MONITOR_INTERVAL_SECONDS=str(settings.monitor_interval_seconds),
        TCP_NODELAY="1",
    )
    if settings.onnx_cache:
        env["TRIAGE_ONNX_CACHE"] = str(settings.onnx_cache)
    if settings.broker_url:
        env["TRIAGE_BROKER_URL"] = settings.broker_url.get_secret_value()
    if settings.pacs:
        env["TRIAGE_PACS"] = str(settings.pacs)
    env["TRIAGE_MODELS_DIR"] = str(settings.models_dir)
    env.update(extra)
    return env


def start_triage(command: str, settings: Settings, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``triage COMMAND`` as its own process, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "triage", command],
            env=triage_env(settings, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Ask a process to stop (SIGTERM) and wait; kill it if it does not."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


class Orthanc:
    """A private Orthanc (Debian package) on its own ports and folders, driven through its REST API."""

    def __init__(self, folder: Path, modalities: dict[str, tuple[str, str, int]]) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.folder = folder
        config = {
            "Name": "triage-test-pacs",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomModalities": {name: list(peer) for name, peer in modalities.items()},
            "Plugins": [],
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.start()

    def start(self) -> None:
        """Start (or restart, with the same ports and data) and wait until its REST API answers."""
        self.log = (self.folder / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [require_tool("Orthanc"), str(self.folder / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=PEER_ENV,
        )
        wait_until(self._up, timeout=30, interval=0.2)

    def _up(self) -> bool:
        try:
            self.get("/system")
        except OSError:
            return False
        return True

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.load(response)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def download(self, path: str) -> bytes:
        """A file from the REST API (``/instances/{id}/file``): the stored DICOM object."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=60) as response:
            return bytes(response.read())

    def upload(self, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/instances", path.read_bytes())
        return result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


# Debian 12's JDK stops PixelMed's XSLT at its default XPath limits ("JAXP0801003 ... '10,000' limit").
_VALIDATE_MANY = Path(__file__).with_name("ValidateMany.java")
_PIXELMED_JAVA = "-Djdk.xml.xpathExprOpLimit=0 -Djdk.xml.xpathExprGrpLimit=0 -Djdk.xml.xpathTotalOpLimit=0"


def sr_template_findings_of(paths: Sequence[Path]) -> list[tuple[list[str], list[str]]]:
    """PixelMed's DicomSRValidator on SRs, each one's (template violations, items outside the
    template): it checks the root template (TID 1500, TID 4000) and its context groups, which
    dciodvfy does not. One JVM for them all (testkit/ValidateMany.java): the JVM and the template
    compilation cost about ten seconds a run, each further file about two."""
    require_tool("DicomSRValidator")  # Debian's pixelmed-apps: the jar below and its dependencies
    result = subprocess.run(
        [require_tool("java"), "-cp", "/usr/share/java/pixelmed.jar", str(_VALIDATE_MANY), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "JAVA_TOOL_OPTIONS": _PIXELMED_JAVA},
        timeout=300,
    )
    assert result.returncode == 0, f"DicomSRValidator failed: {result.stderr[-2000:]}"
    per_file: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("=== "):
            lines = per_file.setdefault(line[4:], [])
        else:
            lines.append(line)
    found = []
    for path in paths:
        lines = per_file[str(path)]
        assert "Root Template Validation Complete" in lines, f"DicomSRValidator did not finish: {lines[-5:]}"
        found.append(
            (
                [line for line in lines if line.startswith("Error")],
                [line for line in lines if line.startswith("Warning")],
            )
        )
    return found


def dciodvfy_errors(path: Path) -> list[str]:
    """The Error lines dicom3tools' dciodvfy prints for a DICOM file (warnings are not errors)."""
    result = subprocess.run(
        [require_tool("dciodvfy"), str(path)], capture_output=True, text=True, check=False
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
