"""What can be checked of the container setup without a Docker engine."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_redis_worker_and_scalable_api_with_healthchecks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "worker", "api"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert "--appendonly" in services["redis"]["command"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert {"redis-data", "smft-data"} <= set(compose["volumes"])
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["worker"]["condition"] == "service_healthy"
    assert "container_name" not in services["api"]  # replicas can be scaled
    assert ":?" in services["api"]["environment"]["SMFT_API_TOKEN"]  # no open API on all interfaces


def test_gpu_override_reserves_an_nvidia_gpu_for_the_worker():
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    devices = gpu["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and gpu["services"]["worker"]["environment"]["SMFT_DEVICE"] == "cuda"


def test_dockerfile_installs_like_the_readme():
    dockerfile = (ROOT / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "scripts/setup.sh" in dockerfile and "scripts/setup.sh && .venv/bin/smft serve" in readme
    for package in ("model", "worker", "service", "bench", "cli"):  # the `smft` entry point needs them all
        assert f"COPY {package} ./{package}" in dockerfile, package
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/setup.sh --dev && .venv/bin/python -m pytest" in ci
    assert "scripts/setup.sh --dev && .venv/bin/python -m pytest -q" in readme
