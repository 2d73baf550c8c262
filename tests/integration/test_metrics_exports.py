"""Issue "Metered runs": the same numbers reach the Pushgateway and OTLP (contract sections 3-4).

Real ondine runs, a real Pushgateway binary and the in-test OTLP receivers: what is asserted is
what those servers actually hold after the SDK's exporters and our pusher sent it.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ondine_otel.config import TelemetryConfig
from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews
from ondine_otel.export import providers as exporters
from ondine_otel.export.exports import bind_metrics
from ondine_otel.export.pushgateway import INSTANCE, JOB, LAST_SUCCESS, PushgatewayPusher
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.runtime import runtime
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.instruments import metric_views
from ondine_otel.telemetry.metrics import OndineMetrics
from tests.spy import ContextSpy
from tests.support.otlp_receiver import (
    MetricValue,
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    attributes,
)
from tests.support.services import Service
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def run_pipeline(pipeline: Any, **kwargs: Any) -> Any:
    """Execute with a ContextSpy attached; returns the context (also when the run failed)."""
    spy = ContextSpy()
    pipeline.add_observer(spy)
    try:
        pipeline.execute(**kwargs)
    except Exception:  # noqa: BLE001 - failing runs are part of these tests
        assert spy.context is not None
    return spy.context


# --- Pushgateway ---------------------------------------------------------------------------


def _request(url: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        body: bytes = response.read()
        return body


def gateway_samples(gateway: Service) -> list[Sample]:
    text = _request(f"{gateway.url}/metrics").decode("utf-8")
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def wipe(gateway: Service) -> None:
    """Empty the gateway (admin API): a Pushgateway may start with persisted groups."""
    _request(f"{gateway.url}/api/v1/admin/wipe", method="PUT")


def group(samples: list[Sample], pipeline: str) -> list[Sample]:
    """Samples pushed under the pipeline's grouping key {job="ondine", pipeline=...}."""
    return [
        s
        for s in samples
        if s.labels.get("job") == JOB and s.labels.get(semconv.LABEL_PIPELINE) == pipeline
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert found, f"no {name}{labels} in {sorted({s.name for s in samples})}"
    return sum(found)


def run_id_samples(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if semconv.LABEL_RUN_ID in s.labels]


@dataclass
class PushRig:
    """Our registry + pusher wired like telemetry._start: metrics first, then the pusher."""

    endpoint: exporters.PrometheusEndpoint
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    pusher: PushgatewayPusher
    instrumentor: OndineInstrumentor

    def close(self, push_timeout: float | None = None) -> None:
        self.instrumentor.uninstrument()
        self.pusher.close(timeout=push_timeout)
        self.endpoint.close()
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


def start_push_rig(
    url: str, *, pipeline_name: str, interval: float, timeout: float = 5.0
) -> PushRig:
    endpoint = exporters.PrometheusEndpoint()
    meter_provider = MeterProvider(metric_readers=[endpoint.reader], views=metric_views())
    tracer_provider = TracerProvider()
    metrics = runtime.get().metrics_for(meter_provider)
    pusher = PushgatewayPusher(
        url,
        endpoint.registry,
        runs=runtime.get().registry,
        pipeline_label=metrics.labels.pipeline,
        interval=interval,
        timeout=timeout,
    )
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider,
        listeners=[metrics, pusher],
        pipeline_name=pipeline_name,
    )
    return PushRig(endpoint, meter_provider, tracer_provider, pusher, instrumentor)


@pytest.fixture
def gateway(pushgateway: Service) -> Iterator[Service]:
    """The Pushgateway, empty at the start and wiped again at the end."""
    wipe(pushgateway)
    assert [s for s in gateway_samples(pushgateway) if "job" in s.labels] == []
    yield pushgateway
    wipe(pushgateway)


def pushed_once(gateway: Service, name: str, runs: int, rig: PushRig | None = None) -> list[Any]:
    """The pipeline's samples (of `rig`'s process group only, when given) once the final push
    of its `runs`-th run has landed.

    Final pushes happen on the pusher's worker thread, after execute() has returned. With a
    rig, its queue is drained first: until then a pipeline push can show the run counted while
    the run's own group is still to be pushed or deleted.
    """
    if rig is not None:
        assert rig.pusher.flush(timeout=15), "the pusher's queued pushes did not finish"

    def landed() -> list[Any] | None:
        samples = group(gateway_samples(gateway), name)
        if rig is not None:
            own = rig.pusher._process_key(name)[INSTANCE]
            samples = [s for s in samples if s.labels.get(INSTANCE) == own]
        done = sum(s.value for s in samples if s.name == "ondine_runs_total")
        stale = run_id_samples(gateway_samples(gateway))
        return samples if done == runs and not stale else None

    found: list[Any] = wait_until(landed, timeout=15, message=f"{runs} run(s) pushed for {name}")
    return found


def test_pushgateway_keeps_counters_and_moves_last_success_only_on_success(
    gateway: Service, tmp_path: Path
) -> None:
    name = "nightly-reviews"
    rig = start_push_rig(gateway.url, pipeline_name=name, interval=30.0)

    def shared_success() -> float:
        """The last success in the pipeline's shared group (no instance label)."""
        samples = group(gateway_samples(gateway), name)
        return value([s for s in samples if not s.labels.get(INSTANCE)], LAST_SUCCESS)

    try:
        ok = run_pipeline(build_demo_pipeline(load_reviews(20), checkpoint_dir=tmp_path / "ok"))
        pushed = pushed_once(gateway, name, runs=1, rig=rig)
        assert value(pushed, "ondine_runs_total", status="success") == 1
        assert value(pushed, "ondine_cost_usd_total") == pytest.approx(
            float(ok.accumulated_cost), rel=1e-9
        )
        assert value(pushed, "ondine_tokens_total") == ok.accumulated_tokens
        assert value(pushed, "ondine_tokens_total", type="input") == ok.run_progress.input_tokens
        assert value(pushed, "ondine_rows_processed_total") == 20
        success_at = value(pushed, LAST_SUCCESS)
        assert abs(success_at - time.time()) < 120
        assert shared_success() == success_at
        assert run_id_samples(gateway_samples(gateway)) == []

        failing = build_demo_pipeline(
            load_reviews(20),
            client=OfflineLLMClient(crash_after=5),
            error_policy="fail",
            concurrency=1,
            checkpoint_dir=tmp_path / "failed",
        )
        failed = run_pipeline(failing)
        assert float(failed.accumulated_cost) > 0
        pushed = pushed_once(gateway, name, runs=2, rig=rig)
        assert value(pushed, "ondine_runs_total", status="error") == 1
        assert value(pushed, "ondine_runs_total", status="success") == 1
        assert value(pushed, "ondine_cost_usd_total") == pytest.approx(
            float(ok.accumulated_cost) + float(failed.accumulated_cost), rel=1e-9
        )
        assert value(pushed, "ondine_tokens_total") == (
            ok.accumulated_tokens + failed.accumulated_tokens
        )
        assert value(pushed, "ondine_rows_processed_total") == 20 + 5
        assert value(pushed, LAST_SUCCESS) == success_at
        assert shared_success() == success_at
        assert run_id_samples(gateway_samples(gateway)) == []
    finally:
        rig.close()

    # A later job process that only fails must not erase (or move) the last success either:
    # its own group starts new series, and the shared group keeps the first one's success.
    rig = start_push_rig(gateway.url, pipeline_name=name, interval=30.0)
    try:
        run_pipeline(
            build_demo_pipeline(
                load_reviews(5),
                client=OfflineLLMClient(crash_after=1),
                error_policy="fail",
                concurrency=1,
                checkpoint_dir=tmp_path / "next-process",
            )
        )
        pushed = pushed_once(gateway, name, runs=1, rig=rig)
        assert value(pushed, "ondine_runs_total", status="error") == 1
        assert value(pushed, "ondine_runs_total", status="success") == 0
        assert shared_success() == success_at
        newest = max(
            s.value for s in group(gateway_samples(gateway), name) if s.name == LAST_SUCCESS
        )
        assert newest == success_at  # what the rules read: max by (pipeline)
        assert run_id_samples(gateway_samples(gateway)) == []
    finally:
        rig.close()


def test_pushgateway_shows_the_active_run_while_it_runs(gateway: Service, tmp_path: Path) -> None:
    name = "long-run"
    rig = start_push_rig(gateway.url, pipeline_name=name, interval=0.2)
    pipeline = build_demo_pipeline(
        load_reviews(200),
        client=OfflineLLMClient(latency_s=0.01),
        concurrency=1,
        checkpoint_dir=tmp_path,
    )
    spy = ContextSpy()
    pipeline.add_observer(spy)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            pipeline.execute()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    worker = threading.Thread(target=work, name="test-long-run")
    try:
        worker.start()
        seen: list[tuple[str, float]] = []

        def progress_pushed() -> bool:
            running = worker.is_alive()
            seen.extend(
                (s.labels[semconv.LABEL_RUN_ID], s.value)
                for s in group(gateway_samples(gateway), name)
                if s.name == "ondine_run_progress_ratio"
            )
            mid_run = {v for _, v in seen if 0.0 < v < 1.0}
            return running and len(mid_run) >= 3

        wait_until(progress_pushed, timeout=15, interval=0.05, message=lambda: f"saw {seen}")
        worker.join(timeout=60)
        assert not worker.is_alive() and not errors, errors
    finally:
        rig.close()

    ratios = sorted({v for _, v in seen})
    print(f"progress ratios seen at the gateway during the run: {ratios}")
    assert {run_id for run_id, _ in seen} == {str(spy.context.session_id)}
    pushed = group(gateway_samples(gateway), name)
    assert value(pushed, "ondine_runs_total", status="success") == 1
    assert value(pushed, "ondine_cost_usd_total") == pytest.approx(
        float(spy.context.accumulated_cost), rel=1e-9
    )
    assert run_id_samples(gateway_samples(gateway)) == []


def test_pushgateway_keeps_no_run_groups_after_many_short_runs(
    gateway: Service, tmp_path: Path
) -> None:
    """Periodic pushes racing with run ends must not recreate a deleted run_id group.

    Four threads run short pipelines back to back while the pusher ticks every millisecond,
    so runs keep ending while a periodic round (which pushes every active run's group) is in
    flight.
    """
    name = "short-runs"
    threads, runs_each = 4, 10
    rig = start_push_rig(gateway.url, pipeline_name=name, interval=0.001)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(runs_each):
                build_demo_pipeline(
                    load_reviews(3),
                    client=OfflineLLMClient(latency_s=0.002),
                    concurrency=1,
                    checkpoint_dir=tmp_path / f"{worker}-{index}",
                ).execute()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    try:
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=60)
        assert not errors and not any(t.is_alive() for t in workers), errors
    finally:
        rig.close()  # stops the periodic pusher: nothing can push after this
    leftovers = run_id_samples(gateway_samples(gateway))
    stale = sorted({s.labels[semconv.LABEL_RUN_ID] for s in leftovers})
    assert stale == [], f"{len(stale)} finished runs left run_id groups: {stale[:4]}"
    pushed = group(gateway_samples(gateway), name)
    assert value(pushed, "ondine_runs_total") == threads * runs_each


def test_a_gateway_that_never_answers_does_not_stall_the_job(tmp_path: Path) -> None:
    """Pushes run on the pusher's thread: the job's execute() never waits for the network."""
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        rig = start_push_rig(url, pipeline_name="stalled", interval=0.05, timeout=30.0)
        try:
            started = time.monotonic()
            for index in range(3):
                build_demo_pipeline(
                    load_reviews(10), checkpoint_dir=tmp_path / str(index)
                ).execute()
            elapsed = time.monotonic() - started
        finally:
            rig.close(push_timeout=0.5)
    # One blocked push would take 30 s; three runs finish long before a single one could.
    assert elapsed < 15, elapsed


# --- OTLP ----------------------------------------------------------------------------------


def number(point: MetricValue) -> float:
    assert isinstance(point, (int, float)), point
    return float(point)


@pytest.mark.parametrize(
    ("protocol", "receiver_fixture", "temporality"),
    [
        ("http/protobuf", "otlp_http_receiver", "cumulative"),
        ("grpc", "otlp_grpc_receiver", "cumulative"),
        ("http/protobuf", "otlp_http_receiver", "delta"),
    ],
)
def test_otlp_metrics_decode_to_the_run_totals(
    protocol: str,
    receiver_fixture: str,
    temporality: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What instrument() builds: the GenAI histograms are produced at collection time, in the
    temporality the exporter asks for."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", temporality)
    receiver: OtlpHttpReceiver | OtlpGrpcReceiver = request.getfixturevalue(receiver_fixture)
    config = TelemetryConfig.from_settings(
        environ={},
        metrics_exporter="otlp",
        otlp_endpoint=receiver.endpoint,
        otlp_protocol=protocol,
        service_name="metered-runs-test",
    )
    readers = exporters.metric_readers(config, None)
    assert len(readers) == 1
    resource = exporters.build_resource(config)
    meter_provider = exporters.build_meter_provider(config, resource, readers)
    produced = OndineMetrics(runtime.get().registry)
    bind_metrics(produced, meter_provider)
    tracer_provider = TracerProvider()
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, listeners=[produced])
    try:
        context = run_pipeline(build_demo_pipeline(load_reviews(20), checkpoint_dir=tmp_path))
        assert meter_provider.force_flush(timeout_millis=10_000)
        if temporality == "delta":  # a second collection: the deltas must add up, not double
            assert meter_provider.force_flush(timeout_millis=10_000)
    finally:
        instrumentor.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()

    expected_cost = float(context.accumulated_cost)
    expected = {
        "input": context.run_progress.input_tokens,
        "output": context.run_progress.output_tokens,
    }
    assert expected_cost > 0 and sum(expected.values()) == context.accumulated_tokens

    cost = receiver.wait_for_metric(semconv.METRIC_COST)
    assert [attrs for attrs, _ in cost] == [
        {"pipeline": "ondine", "model": "gpt-4o-mini", "provider": "openai"}
    ]
    assert sum(number(v) for _, v in cost) == pytest.approx(expected_cost, rel=1e-9)
    tokens = receiver.metric_points(semconv.METRIC_TOKENS)
    assert {attrs[semconv.LABEL_TYPE]: v for attrs, v in tokens} == expected
    rows = receiver.metric_points(semconv.METRIC_ROWS_PROCESSED)
    assert [v for _, v in rows] == [20]
    runs = receiver.metric_points(semconv.METRIC_RUNS)
    # Both outcomes exist from the first run on, so alerts on increase() see the first failure.
    assert sorted((a[semconv.LABEL_STATUS], v) for a, v in runs) == [("error", 0), ("success", 1)]
    durations = receiver.metric_points(semconv.METRIC_GENAI_DURATION)
    assert [(attrs, v.count) for attrs, v in durations] == [  # type: ignore[union-attr]
        (
            {
                semconv.GEN_AI_OPERATION_NAME: "chat",
                semconv.GEN_AI_PROVIDER_NAME: "openai",
                semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            },
            20,
        )
    ]
    usage = {
        attrs[semconv.GEN_AI_TOKEN_TYPE]: v.sum  # type: ignore[union-attr]
        for attrs, v in receiver.metric_points(semconv.METRIC_GENAI_TOKENS)
    }
    assert usage == expected
    services = {
        attributes(rm.resource.attributes).get("service.name")
        for req in receiver.requests("metrics")
        if isinstance(req.message, ExportMetricsServiceRequest)
        for rm in req.message.resource_metrics
    }
    assert services == {"metered-runs-test"}
    instances = {
        attributes(rm.resource.attributes).get("service.instance.id")
        for req in receiver.requests("metrics")
        if isinstance(req.message, ExportMetricsServiceRequest)
        for rm in req.message.resource_metrics
    }
    assert len(instances) == 1 and None not in instances  # one per process, set for the user
    print(f"OTLP {protocol}: cost={cost} tokens={tokens} rows={rows}")
