"""Which signals the SIGTERM handler takes, and that uninstalling gives the old ones back."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator

import pytest

from ondine_otel.runtime import signals
from ondine_otel.telemetry.registry import RunRegistry


@pytest.fixture(autouse=True)
def restore_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _noop(timeout: float, exiting: bool) -> None:
    pass


def test_takes_sigterm_and_leaves_pythons_ctrl_c_alone() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    handler = signals.install(RunRegistry(), _noop, 1.0)
    assert handler is not None
    assert signal.getsignal(signal.SIGTERM) == handler._handle
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    handler.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_takes_an_unhandled_sigint_and_chains_an_apps_sigterm_handler() -> None:
    def app(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, app)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    handler = signals.install(RunRegistry(), _noop, 1.0)
    assert handler is not None
    assert signal.getsignal(signal.SIGINT) == handler._handle
    handler.uninstall()
    assert signal.getsignal(signal.SIGTERM) is app
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_an_ignored_sigterm_stays_ignored() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    handler = signals.install(RunRegistry(), _noop, 1.0)
    assert handler is not None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_a_handler_installed_later_by_the_app_is_kept_on_uninstall() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    handler = signals.install(RunRegistry(), _noop, 1.0)
    assert handler is not None

    def later(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, later)
    handler.uninstall()
    assert signal.getsignal(signal.SIGTERM) is later


def test_outside_the_main_thread_it_logs_one_line_and_installs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    result: list[object] = []
    with caplog.at_level(logging.INFO, logger="ondine_otel"):
        worker = threading.Thread(
            target=lambda: result.append(signals.install(RunRegistry(), _noop, 1.0))
        )
        worker.start()
        worker.join()
    assert result == [None]
    assert signal.getsignal(signal.SIGTERM) is before
    lines = [r for r in caplog.records if "SIGTERM handler" in r.getMessage()]
    assert len(lines) == 1


def test_process_terminated_names_the_signal() -> None:
    error = signals.ProcessTerminated(signal.SIGTERM)
    assert str(error) == "process terminated by SIGTERM"
    assert not isinstance(error, Exception)  # nothing catches it as an ordinary error
    assert isinstance(error, KeyboardInterrupt)  # ondine saves its checkpoint, as on Ctrl-C
