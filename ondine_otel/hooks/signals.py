"""SIGTERM (and an unhandled SIGINT): end the active runs, flush the exports, then chain.

Python runs no cleanup on SIGTERM: a job evicted by Kubernetes or timed out by Airflow dies in
milliseconds and its run span, hours of trace, never leaves the process. The handler ends every
active run with status ERROR (a `ProcessTerminated` exception event), which also counts
`ondine_runs_total{status="error"}` and queues the final Pushgateway push, flushes within a
bound, then runs the handler that was there before, or restores the default action and
re-raises the signal so the process exits as it would have (128+15 for SIGTERM).

The work runs on a helper thread that the handler waits for at most the bound: the signal may
interrupt the main thread while it holds a lock the work needs, and a stuck flush must never
keep a terminated process alive. SIGINT is taken only where it would otherwise kill the process
(SIG_DFL): Python's default handler raises KeyboardInterrupt, which ondine turns into a
checkpoint and the safety net into an ended run. SIG_IGN is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from ondine_otel.hooks.observer import ACTIVE_RUNS, finish_run
from ondine_otel.telemetry.guard import report

logger = logging.getLogger("ondine_otel")

Handler = Callable[[int, FrameType | None], Any] | int | None
Flush = Callable[[float, bool], None]


class ProcessTerminated(BaseException):
    """The process got a terminating signal while the run was active.

    A BaseException like KeyboardInterrupt: it describes why the run stopped, nothing should
    catch it as an ordinary error.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"process terminated by {name}")


class SignalHandler:
    """Installed for SIGTERM/SIGINT by `install`; `uninstall` puts the previous ones back."""

    def __init__(self, flush: Flush, timeout: float) -> None:
        self._flush = flush
        self._timeout = timeout
        self._previous: dict[int, Handler] = {}
        self._handling = False

    def _install(self, signums: tuple[int, ...]) -> None:
        for signum in signums:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue  # the application chose to ignore it
            if signum == signal.SIGINT and previous is not signal.SIG_DFL:
                continue  # KeyboardInterrupt (default) or the application's own handler
            signal.signal(signum, self._handle)
            self._previous[signum] = previous

    def uninstall(self) -> None:
        """Restore the previous handlers where ours is still the one installed."""
        if threading.current_thread() is not threading.main_thread():
            return  # shutdown from the handler's own helper thread: the handler restores
        for signum, previous in list(self._previous.items()):
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            del self._previous[signum]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        chained = callable(previous)
        if self._handling and not chained:  # signalled again while flushing: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._handling = True
        worker = threading.Thread(
            target=self._end_and_flush,
            args=(signum, not chained),
            name="ondine-otel-signal",
            daemon=True,
        )
        worker.start()
        worker.join(timeout=self._timeout + 0.5)
        if chained:
            self._handling = False  # the application goes on: a later signal starts afresh
            previous(signum, frame)  # type: ignore[misc,operator]
            return
        self.uninstall()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # the default action: the process ends as signalled

    def _end_and_flush(self, signum: int, exiting: bool) -> None:
        error = ProcessTerminated(signum)
        for run in ACTIVE_RUNS.values():
            try:
                finish_run(run, error)
            except Exception as failure:  # noqa: BLE001 - end the others anyway
                report("ending a run on a signal", failure)
        try:
            self._flush(self._timeout, exiting)
        except Exception as failure:  # noqa: BLE001
            report("flushing telemetry on a signal", failure)


def install(flush: Flush, timeout: float) -> SignalHandler | None:
    """Install the handler for SIGTERM (and SIGINT where unhandled); None where impossible.

    `flush(timeout, exiting)` must return within about `timeout` seconds; `exiting` says the
    process is about to die (shut everything down) rather than go on under the application's
    own handler (flush only).
    """
    if threading.current_thread() is not threading.main_thread():
        logger.info("ondine-otel: not installing the SIGTERM handler outside the main thread")
        return None
    handler = SignalHandler(flush, timeout)
    handler._install((signal.SIGTERM, signal.SIGINT))
    return handler


_installed: dict[int, SignalHandler] = {}


def install_for(telemetry: Any) -> None:
    """Install for an `instrument()` handle, per its `handle_signals`/`shutdown_timeout`."""
    config = telemetry.config
    if not config.handle_signals:
        return
    handler = install(lambda timeout, exiting: flush(telemetry, timeout, exiting),
                      config.shutdown_timeout)  # fmt: skip
    if handler is not None:
        _installed[id(telemetry)] = handler


def uninstall_for(telemetry: Any) -> None:
    handler = _installed.pop(id(telemetry), None)
    if handler is not None:
        handler.uninstall()


def flush(telemetry: Any, timeout: float, exiting: bool) -> None:
    """Shut the handle down (the process is ending) or flush it (the application goes on)."""
    if exiting:
        telemetry.shutdown(timeout=timeout)
        return
    if telemetry.pusher is not None:
        telemetry.pusher.flush(timeout)
    millis = int(timeout * 1000)
    for provider in [telemetry.tracer_provider, *telemetry.meter_providers]:
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush(millis)
