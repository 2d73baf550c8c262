"""Start real Prometheus and Pushgateway (Debian packages) on free loopback ports.

The exporters are only proven to work if the genuine servers parse what they
emit, so integration tests run the real binaries rather than fakes. Every
process gets its own directory (config, TSDB, log) under the test's tmp dir
and its cwd there, which is also how .ci/run recognises strays to clean up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from .wait import free_port, wait_until

PROMETHEUS_BIN = "prometheus"
PUSHGATEWAY_BIN = "prometheus-pushgateway"
_START_ATTEMPTS = 3  # free_port() can race with another process grabbing the port


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_binary(name: str, hint: str | None = None) -> str:
    """Locate ``name`` on PATH; skip locally, fail in CI (which installs it)."""
    path = shutil.which(name)
    if path:
        return path
    hint = hint or (
        f"{name} not installed (Debian: apt-get install prometheus prometheus-pushgateway "
        "prometheus-alertmanager)"
    )
    if _running_in_ci():
        pytest.fail(f"{hint}; CI must provide it, see .ci/run")
    pytest.skip(hint)


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return int(resp.status), resp.read()


class Service:
    """A server subprocess bound to 127.0.0.1; stops on ``stop()`` or leaving ``with``."""

    def __init__(
        self, name: str, process: subprocess.Popen[bytes], port: int, log_path: Path, log: IO[bytes]
    ) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.address = f"127.0.0.1:{port}"  # scrape-target form
        self.url = f"http://{self.address}"
        self.log_path = log_path
        self._log = log

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate, then kill if it ignores SIGTERM, so no test leaks a daemon."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._log.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Service({self.name!r}, url={self.url!r}, pid={self.process.pid})"


def _start(
    name: str,
    workdir: Path,
    make_cmd: Callable[[int], list[str]],
    timeout: float,
    *,
    ready_path: str = "/-/ready",
    make_env: Callable[[int], dict[str, str]] | None = None,
) -> Service:
    """Launch, then poll ``ready_path``; retry on a new port if the process dies early.

    ``make_env(port)``: extra environment for servers told their port that way."""
    log_path = workdir / f"{name}.log"
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        log = open(log_path, "ab")  # noqa: SIM115 - owned and closed by Service.stop
        log.write(f"--- attempt {attempt}: port {port}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            make_cmd(port),
            cwd=workdir,
            env=None if make_env is None else {**os.environ, **make_env(port)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        service = Service(name, proc, port, log_path, log)

        def not_ready(svc: Service = service) -> str:
            return f"{name} not ready at {svc.url}{ready_path}; log tail:\n{svc.log_tail()}"

        def ready(svc: Service = service) -> str:
            if svc.process.poll() is not None:
                return "exited"
            status, _ = _http_get(f"{svc.url}{ready_path}", timeout=2)
            return "ready" if status == 200 else ""

        try:
            state = wait_until(
                ready,
                timeout=timeout,
                interval=0.1,
                message=not_ready,
            )
        except BaseException:
            service.stop()
            raise
        if state == "ready":
            return service
        service.stop()
    raise AssertionError(
        f"{name} exited during startup {_START_ATTEMPTS} times; log tail:\n{service.log_tail()}"
    )


def start_pushgateway(tmp_dir: Path | str, timeout: float = 30.0) -> Service:
    """Start a Pushgateway with the admin API on (so tests can wipe it) and no persistence."""
    binary = find_binary(PUSHGATEWAY_BIN)
    workdir = Path(tempfile.mkdtemp(prefix="pushgateway-", dir=tmp_dir))
    return _start(
        "pushgateway",
        workdir,
        lambda port: [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-admin-api",
            "--persistence.file=",  # never load or save the system-wide state file
        ],
        timeout,
    )


def prometheus_config(
    scrape_targets: list[str], scrape_interval: str = "1s", metrics_path: str = "/metrics"
) -> str:
    """Render prometheus.yml (JSON is valid YAML, so no YAML library is needed).

    ``honor_labels`` keeps the job/instance labels pushed to a Pushgateway
    instead of overwriting them with the scrape job's.
    """
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "test",
                "honor_labels": True,
                "metrics_path": metrics_path,
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": list(scrape_targets)}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def start_prometheus(
    tmp_dir: Path | str,
    scrape_targets: list[str],
    scrape_interval: str = "1s",
    metrics_path: str = "/metrics",
    timeout: float = 60.0,
) -> Service:
    """Start Prometheus scraping ``scrape_targets`` ("127.0.0.1:PORT") into a throwaway TSDB."""
    binary = find_binary(PROMETHEUS_BIN)
    workdir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=tmp_dir))
    config = workdir / "prometheus.yml"
    config.write_text(prometheus_config(scrape_targets, scrape_interval, metrics_path))
    return _start(
        "prometheus",
        workdir,
        lambda port: [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        timeout,
    )


def _base_url(target: Service | str) -> str:
    return target.url if isinstance(target, Service) else target.rstrip("/")


def prom_query(target: Service | str, promql: str) -> list[dict[str, Any]]:
    """Instant query via ``/api/v1/query``; returns ``data.result`` (vector samples).

    Each sample is ``{"metric": {labels}, "value": [ts, "string value"]}``.
    """
    url = f"{_base_url(target)}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    _, body = _http_get(url)
    payload = json.loads(body)
    if payload.get("status") != "success":
        raise AssertionError(f"query {promql!r} failed: {payload}")
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def sample_values(result: list[dict[str, Any]]) -> list[float]:
    """The float values of a ``prom_query`` vector result."""
    return [float(sample["value"][1]) for sample in result]


def _targets_summary(base: str) -> str:
    try:
        _, body = _http_get(f"{base}/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"]
    except (OSError, ValueError, KeyError) as exc:
        return f"<targets unavailable: {exc}>"
    return "; ".join(
        f"{t.get('scrapeUrl')} health={t.get('health')} error={t.get('lastError')!r}"
        for t in active
    )


def wait_for_query(
    target: Service | str,
    promql: str,
    predicate: Callable[[list[dict[str, Any]]], object] = bool,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Poll ``promql`` until ``predicate(result)`` is truthy (default: non-empty).

    Prometheus only sees data after its first scrape, so tests must poll.
    The timeout error lists scrape-target health, and the log tail when
    given a ``Service``, since "no data" usually means a failing scrape.
    """
    base = _base_url(target)
    result: list[dict[str, Any]] = []

    def check() -> bool:
        nonlocal result
        result = prom_query(base, promql)
        return bool(predicate(result))

    def explain() -> str:
        text = f"{promql!r} never matched; last result={result}; targets: {_targets_summary(base)}"
        if isinstance(target, Service):
            text += f"\nlog tail:\n{target.log_tail()}"
        return text

    wait_until(check, timeout=timeout, interval=0.25, message=explain)
    return result


# --- Alertmanager, a rule-loading Prometheus, promtool and amtool --------------------------

ALERTMANAGER_BIN = "prometheus-alertmanager"
PROMTOOL_BIN = "promtool"
AMTOOL_BIN = "amtool"


def start_alertmanager(tmp_dir: Path | str, config_text: str, timeout: float = 30.0) -> Service:
    """Start an Alertmanager with ``config_text`` as its config, clustering off.

    An empty ``--cluster.listen-address`` keeps it from binding the gossip port on every
    interface; the tests only ever use one instance.
    """
    binary = find_binary(ALERTMANAGER_BIN)
    workdir = Path(tempfile.mkdtemp(prefix="alertmanager-", dir=tmp_dir))
    config = workdir / "alertmanager.yml"
    config.write_text(config_text)
    return _start(
        "alertmanager",
        workdir,
        lambda port: [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        timeout,
    )


def start_prometheus_with_rules(
    tmp_dir: Path | str,
    scrape_targets: list[str],
    rule_files: list[Path],
    alertmanager: Service | None = None,
    scrape_interval: str = "1s",
    timeout: float = 60.0,
) -> Service:
    """Like ``start_prometheus``, plus rule files evaluated every ``scrape_interval`` and
    alerts sent to ``alertmanager``."""
    binary = find_binary(PROMETHEUS_BIN)
    workdir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=tmp_dir))
    config: dict[str, Any] = json.loads(prometheus_config(scrape_targets, scrape_interval))
    config["rule_files"] = [str(Path(path).resolve()) for path in rule_files]
    if alertmanager is not None:
        config["alerting"] = {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [alertmanager.address]}]}
            ]
        }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return _start(
        "prometheus",
        workdir,
        lambda port: [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        timeout,
    )


def alertmanager_alerts(target: Service | str) -> list[dict[str, Any]]:
    """Every alert Alertmanager holds (``/api/v2/alerts``), inhibited and silenced ones too."""
    _, body = _http_get(f"{_base_url(target)}/api/v2/alerts")
    alerts: list[dict[str, Any]] = json.loads(body)
    return alerts


def run_tool(
    name: str, *args: str | Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run promtool/amtool (found like the servers) and return its result, output as text."""
    binary = find_binary(name)
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
