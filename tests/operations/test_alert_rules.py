"""The example Prometheus config and alert rules: they parse, every metric an alert reads
is one a real scrape shows after real work, and every alert has its runbook section."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.operations.conftest import bill_deliver_allocate, drain_mixed_traffic, samples, scrape

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "ops" / "prometheus"


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "operations.md").read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_scrape_config_names_the_rules_and_every_process():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())

    assert config["rule_files"] == ["alerts.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {
        "tokenledger-web", "tokenledger-consumer", "tokenledger-worker", "tokenledger-beat"}


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section():
    anchors = runbook_anchors()

    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


@pytest.mark.django_db(transaction=True)
def test_every_metric_an_alert_reads_is_exported(catalog, topics, producer, drain, receiver_url, settings):
    drain_mixed_traffic(producer, topics, drain)
    bill_deliver_allocate(receiver_url, settings)

    exported = {sample.name for sample in samples(scrape())}

    used = {name for rule in alert_rules() for name in re.findall(r"\btokenledger_[a-z0-9_]+", rule["expr"])}
    assert len(used) == 11  # every alert but TokenledgerTargetDown, which reads Prometheus's own `up`
    assert used <= exported, used - exported


def test_promtool_accepts_the_rules_and_the_config():
    assert shutil.which("promtool"), "promtool comes with Debian's prometheus (scripts/system-packages.txt)"
    for command in (["check", "rules", "alerts.yml"], ["check", "config", "--syntax-only", "prometheus.yml"]):
        checked = subprocess.run(["promtool", *command], cwd=PROMETHEUS, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
