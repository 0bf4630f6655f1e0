"""docker-compose.yml (no Docker here): it parses, every service restarts or runs once,
what others wait on can be waited on, and Prometheus scrapes the ports the app serves."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
ONE_SHOT = {"kafka-topics", "migrate"}


def test_long_running_services_restart_and_have_a_healthcheck_one_shots_run_once():
    assert set(SERVICES) == {"kafka", "kafka-topics", "postgres", "redis", "migrate", "web", "consumer", "worker",
                             "beat"}
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and "healthcheck" not in service, name
        else:
            assert service["restart"] == "unless-stopped" and service["healthcheck"]["test"], name


def test_every_dependency_is_healthy_or_completed():
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule == {"condition": expected}, (name, dependency)


def test_metrics_ports_match_the_healthchecks_and_the_scrape_config():
    scrape = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    ports = {job["job_name"].removeprefix("tokenledger-"): (job.get("dns_sd_configs") or [{}])[0].get("port")
             or int(job["static_configs"][0]["targets"][0].rsplit(":", 1)[1]) for job in scrape}

    assert ports == {"web": 8000, "consumer": 9101, "worker": 9102, "beat": 9103}
    for name in ("consumer", "worker", "beat"):
        assert SERVICES[name]["environment"]["METRICS_PORT"] == ports[name]
        assert f"http://127.0.0.1:{ports[name]}/metrics" in SERVICES[name]["healthcheck"]["test"][-1]
    assert SERVICES["worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert SERVICES["web"]["command"].startswith("gunicorn -c config/gunicorn.py ")
