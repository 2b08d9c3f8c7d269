"""Prometheus and Alertmanager files: structure here, and validation by the real promtool/amtool."""

import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import DEPLOY, REPO

PROMETHEUS = DEPLOY / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "rules" / "pipeline_guard.rules.yml"
RULE_TESTS = PROMETHEUS / "tests" / "pipeline_guard.test.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"

ALERTS = {
    "PipelineGuardComponentDown": "critical",
    "PipelineHealthLow": "warning",
    "PipelineGuardHealingCircuitOpen": "critical",
    "PipelineGuardOutboxBacklog": "warning",
    "PipelineGuardSchedulerLag": "warning",
    "PipelineGuardDown": "critical",
}
# Alerts about one guarded component must carry `component` for the guard's receiver.
PER_COMPONENT = {"PipelineGuardComponentDown", "PipelineGuardHealingCircuitOpen"}


def run(*args: str, cwd: Path = REPO) -> str:
    proc = subprocess.run(args, cwd=cwd, check=False, capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{output}"
    return output


def alert_rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_scrape_config_matches_the_compose_services() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "30s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    guard = jobs["pipeline-guard"]
    assert guard.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in guard["static_configs"] for t in static["targets"]]
    assert sorted(targets) == ["guard-2:8080", "guard:8080"]
    am_targets = [
        t for am in config["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]
    ]
    assert am_targets == ["alertmanager:9093"]
    rule_files = [p for pattern in config["rule_files"] for p in CONFIG.parent.glob(pattern)]
    assert RULES in rule_files


def test_every_alert_is_defined_with_severity_and_annotations() -> None:
    rules = alert_rules()
    assert set(ALERTS) <= set(rules)
    for name, severity in ALERTS.items():
        rule = rules[name]
        assert rule["labels"]["severity"] == severity, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        if name in PER_COMPONENT:
            assert "by (component)" in rule["expr"], f"{name} must keep the component label"
    assert "for" in rules["PipelineGuardComponentDown"] and rules["PipelineGuardComponentDown"]["for"] == "2m"
    assert rules["PipelineHealthLow"]["for"] == "5m" and "< 80" in rules["PipelineHealthLow"]["expr"]
    assert (
        rules["PipelineGuardOutboxBacklog"]["for"] == "10m"
        and "> 100" in rules["PipelineGuardOutboxBacklog"]["expr"]
    )
    assert (
        rules["PipelineGuardSchedulerLag"]["for"] == "5m"
        and "> 5" in rules["PipelineGuardSchedulerLag"]["expr"]
    )
    assert 'up{job="pipeline-guard"} == 0' in rules["PipelineGuardDown"]["expr"]


def test_recording_rules_follow_the_naming_convention() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    records = [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]
    assert "pipeline_guard:check_failure_ratio:rate5m" in records
    for name in records:
        level, metric, operations = name.split(":")  # level:metric:operations
        assert level and metric and operations, name


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(ALERTS) <= fires, set(ALERTS) - fires
    assert set(ALERTS) <= quiet, set(ALERTS) - quiet


def test_alertmanager_posts_to_the_guard_receiver_with_a_bearer_token() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert config["route"]["receiver"] == "pipeline-guard"
    (hook,) = receivers["pipeline-guard"]["webhook_configs"]
    assert hook["url"] == "http://guard-api:8080/api/v1/integrations/alertmanager"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert auth.get("credentials_file") or auth.get("credentials")
    assert "component" in config["route"]["group_by"]


@pytest.mark.realclients
def test_promtool_check_config(promtool: str, tmp_path: Path) -> None:
    # A copy keeps the check independent of the working directory; rule paths are relative to the file.
    copy = tmp_path / "prometheus"
    (copy / "rules").mkdir(parents=True)
    (copy / "prometheus.yml").write_text(CONFIG.read_text())
    (copy / "rules" / RULES.name).write_text(RULES.read_text())
    output = run(promtool, "check", "config", str(copy / "prometheus.yml"))
    assert "1 rule files found" in output


@pytest.mark.realclients
def test_promtool_check_rules(promtool: str) -> None:
    output = run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in output


@pytest.mark.realclients
def test_promtool_unit_tests_pass(promtool: str) -> None:
    output = run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output


@pytest.mark.realclients
def test_promtool_unit_tests_catch_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    # The unit tests must be able to fail: loosen the component-down threshold and they do.
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    broken = RULES.read_text().replace(
        "(pipeline_guard_component_health) == 0", "(pipeline_guard_component_health) < 1"
    )
    assert broken != RULES.read_text()
    (tmp_path / "rules" / RULES.name).write_text(broken)
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    proc = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests" / RULE_TESTS.name)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "PipelineGuardComponentDown" in proc.stdout + proc.stderr


@pytest.mark.realclients
def test_amtool_check_config(amtool: str) -> None:
    output = run(amtool, "check-config", str(ALERTMANAGER))
    assert "SUCCESS" in output
