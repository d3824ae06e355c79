"""The alerting rules and the Grafana dashboard in the repository: checked and unit-tested by
Prometheus's own promtool, and every metric they name is one triage's /metrics really exports."""

import json
import re
import subprocess

from fastapi.testclient import TestClient

from testkit.peers import REPO, require_tool
from tests.worklist import seed
from worklist.app import create_app

RULES = REPO / "configs" / "prometheus"
DASHBOARD = REPO / "configs" / "grafana" / "triage-dashboard.json"


def promtool(*arguments):
    return subprocess.run(
        [require_tool("promtool"), *arguments], cwd=RULES, capture_output=True, text=True, timeout=60
    )


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    checked = promtool("check", "rules", "triage-alerts.yml")
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, (
        checked.stdout + checked.stderr
    )
    tested = promtool("test", "rules", "triage-alerts.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_a_rule_that_would_never_fire_fails_its_unit_test(tmp_path):
    """The unit tests can fail: the switch rule with a wrong comparison does not pass them."""
    broken = (
        (RULES / "triage-alerts.yml")
        .read_text()
        .replace("triage_decision_switched_off == 1", "triage_decision_switched_off == 2")
    )
    (tmp_path / "triage-alerts.yml").write_text(broken)
    (tmp_path / "triage-alerts.test.yml").write_text((RULES / "triage-alerts.test.yml").read_text())
    found = subprocess.run(
        [require_tool("promtool"), "test", "rules", "triage-alerts.test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert found.returncode != 0 and "TriageDecisionSwitchedOff" in found.stdout + found.stderr


def named_metrics(text):
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in re.findall(r"\btriage_[a-z0-9_]+", text)}


def test_every_metric_the_rules_and_the_dashboard_name_is_exported(make_settings):
    settings = make_settings(pacs="PACS@127.0.0.1:1")
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    from triage.records.db import Database, migrate

    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    seed.worklist_of_every_kind(database, settings)
    with TestClient(create_app(database, settings)) as client:
        exported = named_metrics(client.get("/metrics").text)  # HELP lines name even families without rows
    database.dispose()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    expressions = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    for source, names in (("rules", named_metrics((RULES / "triage-alerts.yml").read_text())),
                          ("dashboard", named_metrics(expressions))):  # fmt: skip
        assert names, source
        assert names <= exported, f"the {source} name metrics /metrics does not export: {names - exported}"
