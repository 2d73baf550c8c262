"""OTLP collector faults: refused, hanging, 503/UNAVAILABLE and 2 s per request, grpc and http.

Each combination runs in its own interpreter (global providers, as in a user's job) against a
real fault server in this process. The child alternates the same job with the faulty exporter
(traces and metrics both over OTLP) and with the same instrumentation exporting nothing (spans
dropped, metrics kept for an unscraped pull reader), medians over the repetitions, and
shuts each set-up down with a bound. Timings are reported, never asserted tightly: the bound
checked is on the time a fault adds to a job (paired runs, median), well under the one OTLP
timeout that a single stalled export would add; the measured ratio goes to
docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import faults, jobs
from tests.reliability.conftest import Figures

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

PROTOCOLS = ("grpc", "http/protobuf")
FAULTS = ("refused", "hanging", "unavailable", "slow")
REPETITIONS = 5
ROWS = 1200
OTLP_TIMEOUT_MS = 1000
SHUTDOWN_TIMEOUT_S = 1.5

_CHILD = f"""
import fcntl
import ondine_otel
endpoint, protocol = sys.argv[1], sys.argv[2]
df = load_reviews({ROWS})

def job():
    # One timed job at a time across the children (their shutdown waits may overlap).
    with open(sys.argv[3], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pipeline = build_demo_pipeline(df, checkpoint_dir=tempfile.mkdtemp())
        started = time.perf_counter()
        result = pipeline.execute()
        return time.perf_counter() - started, result

faulty = dict(otlp_endpoint=endpoint, otlp_protocol=protocol, otlp_timeout={OTLP_TIMEOUT_MS},
              traces_exporter="otlp", metrics_exporter="otlp")
# The same instrumentation with nothing exported: spans end in a provider with no exporter,
# metrics are recorded for a pull reader nobody scrapes. Only the exporting differs.
bare = dict(traces_exporter="none", metrics_exporter="prometheus", prometheus_port=0,
            prometheus_host="127.0.0.1")
job()  # warm-up: imports and caches, outside the comparison
walls = {{"none": [], "fault": []}}
shutdowns, outputs, costs, errors = [], [], [], []
for rep in range({REPETITIONS}):
    for condition in (("none", "fault") if rep % 2 == 0 else ("fault", "none")):
        handle = ondine_otel.instrument(**(faulty if condition == "fault" else bare))
        try:
            wall, result = job()
        except BaseException as error:  # reported: nothing may reach the job
            errors.append(repr(error))
            continue
        walls[condition].append(wall)
        outputs.append(frame_of(result))
        costs.append(str(result.costs.total_cost))
        started = time.perf_counter()
        handle.shutdown(timeout={SHUTDOWN_TIMEOUT_S})
        if condition == "fault":
            shutdowns.append(time.perf_counter() - started)
report(walls=walls, shutdowns=shutdowns, same_output=all(o == outputs[0] for o in outputs),
       same_cost=len(set(costs)) == 1, errors=errors, logs=warnings())
"""


@dataclass(frozen=True)
class Outcome:
    fault: str
    protocol: str
    result: dict[str, Any]
    attempts: int | None  # export requests/connections the fault server saw (None: refused)

    @property
    def ratio(self) -> float:
        walls = self.result["walls"]
        return float(statistics.median(walls["fault"]) / statistics.median(walls["none"]))

    @property
    def added_s(self) -> float:
        """Seconds the fault adds to a job: the median of the paired runs' differences."""
        walls = self.result["walls"]
        pairs = zip(walls["fault"], walls["none"], strict=True)
        return float(statistics.median(fault - none for fault, none in pairs))


@contextlib.contextmanager
def fault_server(fault: str, protocol: str) -> Iterator[tuple[str, Any]]:
    """(endpoint, server) for one fault; the server counts what reached it."""
    grpc_ = protocol == "grpc"
    if fault == "refused":
        with faults.refusing_port() as port:
            yield f"http://127.0.0.1:{port}", None
    elif fault == "hanging":
        with faults.HangingServer() as hanging:
            yield hanging.endpoint, hanging
    elif fault == "unavailable":
        with faults.GrpcFaultServer() if grpc_ else faults.HttpFaultServer(503) as failing:
            yield failing.endpoint, failing
    else:
        slow_server = faults.GrpcFaultServer(None, 2.0) if grpc_ else faults.HttpFaultServer(
            200, 2.0
        )
        with slow_server as slow:
            yield slow.endpoint, slow


def _attempts(server: Any, protocol: str) -> int | None:
    """Export attempts the server can count; None where it cannot (gRPC multiplexes every
    RPC on one connection, which is all a hanging TCP server sees)."""
    if server is None:
        return None
    if isinstance(server, faults.HangingServer):
        return server.connections if protocol != "grpc" else None
    if isinstance(server, faults.GrpcFaultServer):
        return server.calls
    return len(server.requests())


def _run(fault: str, protocol: str, lock: Path) -> Outcome:
    with fault_server(fault, protocol) as (endpoint, server):
        process = jobs.start(
            _CHILD.replace("sys.argv[1], sys.argv[2]", f"{endpoint!r}, {protocol!r}").replace(
                "sys.argv[3]", repr(str(lock))
            ),
            # Short batch delay: many export attempts hit the fault during one job.
            env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        done = jobs.finish(process, timeout=240)
        assert done.returncode == 0 and done.result is not None, done.explain()
        return Outcome(fault, protocol, done.result, _attempts(server, protocol))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Outcome]:
    """All combinations, three children at a time: their shutdown waits overlap, their timed
    jobs take turns (a file lock), so one child's job never competes with another's."""
    lock = tmp_path_factory.mktemp("timing") / "job.lock"
    combos = [(f, p) for f in FAULTS for p in PROTOCOLS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda combo: _run(combo[0], combo[1], lock), combos))
    return {(o.fault, o.protocol): o for o in results}


_SEES = {
    "refused": "nothing in the job; exporter log lines",
    "hanging": "nothing in the job; exporter log lines (export timeouts)",
    "unavailable": "nothing in the job; exporter log lines",
    "slow": "nothing in the job; exporter log lines (export timeouts)",
}
_NAMES = {
    "refused": "OTLP collector refuses connections",
    "hanging": "OTLP collector accepts and never answers",
    "unavailable": "OTLP collector answers 503 / UNAVAILABLE",
    "slow": "OTLP collector answers after 2 s per request",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", FAULTS)
def test_collector_fault_never_reaches_the_job(
    fault: str, protocol: str, outcomes: dict[tuple[str, str], Outcome], figures: Figures
) -> None:
    outcome = outcomes[(fault, protocol)]
    result = outcome.result
    worst_shutdown = max(result["shutdowns"]) if result["shutdowns"] else float("nan")
    fault_logs = result["logs"]
    figures.record(
        f"{_NAMES[fault]} ({protocol}; traces and metrics)",
        _SEES[fault],
        f"result unchanged, nothing raised, shutdown(timeout={SHUTDOWN_TIMEOUT_S:g}) bounded, "
        "one warning per signal (not one per batch)",
        f"wall {outcome.ratio:.2f}x nothing exported (median of {REPETITIONS}); shutdown max "
        f"{worst_shutdown:.2f} s; {len(fault_logs)} log lines for "
        f"{outcome.attempts if outcome.attempts is not None else 'n/a'} failed exports",
        ratio=outcome.ratio,
        shutdown_s=worst_shutdown,
        log_lines=len(fault_logs),
    )
    assert result["errors"] == []
    assert result["same_output"] and result["same_cost"]
    assert len(result["walls"]["fault"]) == REPETITIONS
    # Loose on purpose (the figure goes to docs/reliability.md; make bench measures the ratio
    # properly). An absolute bound, not a ratio: these jobs take ~0.3 s and the CPU flips
    # between a fast and a 2x slower state (a ratio of 2.01 was seen with nothing stalled,
    # adding 0.21 s), while one stalled export adds at least the OTLP timeout to its job.
    assert outcome.added_s < 0.6 * OTLP_TIMEOUT_MS / 1000, result["walls"]
    assert worst_shutdown < SHUTDOWN_TIMEOUT_S + 0.25, result["shutdowns"]  # scheduling slack
    if outcome.attempts is not None:  # the fault was really hit, more than once
        assert outcome.attempts >= 2, outcome.attempts
    assert fault_logs, "the fault must be reported in the log"
    # One line per failing signal for the whole process, not one per failed batch or retry.
    assert len(fault_logs) <= 2, [f"{r['logger']}: {r['text'][:120]}" for r in fault_logs]
    # ondine-otel's own line: the endpoint and the settings to check, not the SDK's retries.
    ours = [r["text"] for r in fault_logs if r["text"].startswith("ondine-otel: exporting")]
    assert ours and all("OTEL_EXPORTER_OTLP_" in text for text in ours), fault_logs
