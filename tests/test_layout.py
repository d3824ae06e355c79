"""Architecture rules (STYLE.md section 1), asserted from the code's imports with an ``ast`` pass."""

import ast
import subprocess
import sys
from collections import defaultdict

import pytest

from testkit.peers import REPO

SERVICES = ("dicom_node", "inference", "delivery", "worklist")
PACKAGES = ("triage", "triage.cli", *SERVICES, "training", "evaluation")


def unit(module: str) -> str | None:
    """The layout unit a dotted module belongs to: ``triage.cli``, the ``triage`` base, or a package."""
    if module == "triage.cli" or module.startswith("triage.cli."):
        return "triage.cli"
    if module == "triage.__main__":
        return "entry point"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def imports() -> dict[str, set[tuple[str, str]]]:
    """For every layout unit: (importing file, imported unit) for each import of another unit."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for package in {p.split(".")[0] for p in PACKAGES}:
        for path in (REPO / package).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            here = unit(module)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                for name in names:
                    other = unit(name)
                    if other is not None and other != here:
                        found[here].add((str(path.relative_to(REPO)), other))
    return found


GRAPH = imports()


def importers_of(target: str) -> set[str]:
    return {
        f"{source}: {path}" for source, edges in GRAPH.items() for path, other in edges if other == target
    }


@pytest.mark.parametrize("service", SERVICES)
def test_the_services_never_import_each_other(service):
    others = {s for s in SERVICES if s != service}
    crossing = {f"{path} -> {other}" for path, other in GRAPH[service] if other in others}
    assert not crossing, "services meet in triage.records and triage.messages, never directly"


def test_only_the_entry_point_imports_the_cli():
    assert importers_of("triage.cli") == {"entry point: triage/__main__.py"}


def test_the_base_imports_no_service_and_no_ml_package():
    assert {other for _, other in GRAPH["triage"]} == set(), "triage/ is what everything stands on"


def test_evaluation_measures_what_runs_and_nothing_else():
    reached = {other for _, other in GRAPH["evaluation"]}
    assert reached <= {"triage", "inference"}, reached


def test_the_running_service_never_imports_training():
    for service in SERVICES:
        assert "training" not in {other for _, other in GRAPH[service]}, service


def test_no_import_cycle_between_packages():
    edges = {source: {other for _, other in targets} for source, targets in GRAPH.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [package for package in edges if reaches(package, package, {package})]
    assert cycles == []


def test_the_listener_and_the_api_never_load_torch():
    code = (
        "import sys, dicom_node.listener, delivery.pacs, worklist.app, triage.cli.service; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_rules_see_the_imports_they_judge():
    """The pass must find real edges, or every rule above would pass on an empty graph."""
    assert ("inference/tasks.py", "triage") in GRAPH["inference"]
    assert ("triage/cli/service.py", "dicom_node") in GRAPH["triage.cli"]


# Where a DICOM file is parsed with pydicom's dcmread, and what each reads. A stored instance (what a
# modality or PACS sent) is opened only through triage.stored, with its guards.
DCMREAD_ALLOWED = {
    "triage/stored.py": "stored instances: key inside storage, hash, capped inflation",
    "triage/imaging.py": "files of a labelled data set (training, evaluation)",
    "dicom_node/headers.py": "the file being received, before it is stored (its own bounded check)",
    "delivery/scu.py": "triage's own result objects, to send them",
    "inference/withdrawal.py": "triage's own delivered result objects, to supersede them",
}


def test_stored_instances_are_opened_by_one_reader():
    readers = set()
    for package in {p.split(".")[0] for p in PACKAGES}:
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                imported = isinstance(node, ast.ImportFrom) and node.module == "pydicom"
                if imported and any(alias.name == "dcmread" for alias in node.names):
                    readers.add(path.relative_to(REPO).as_posix())
    assert readers == set(DCMREAD_ALLOWED), readers ^ set(DCMREAD_ALLOWED)
