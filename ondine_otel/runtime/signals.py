"""SIGTERM (and an unhandled SIGINT): end the active runs, flush the exports, then exit.

Python runs no cleanup on SIGTERM: a job evicted by Kubernetes or timed out by Airflow dies in
milliseconds and its run span, hours of trace, never leaves the process. So:

* While runs are active and the application has no SIGTERM handler of its own, the signal is
  turned into a `ProcessTerminated` exception (a KeyboardInterrupt, raised in the main thread
  as Ctrl-C would be): ondine saves its checkpoint (the run can be resumed) and every
  `finally` runs; the safety net ends the run with status ERROR and that exception as its
  event, which counts `ondine_runs_total{status="error"}` and queues the final push. When the
  interpreter exits, an exit hook flushes within the bound and re-raises the signal with its
  default action, so the process ends as signalled (128+15). A watchdog makes sure the
  process ends within the bound even if the exception is caught or a thread holds the exit.
* With no active run, exports are flushed and the signal re-raised at once.
* Where the application installed its own handler first, runs are ended and exports flushed
  (not shut down: the application may go on), then its handler is called.

SIGINT is taken only where it would otherwise kill the process (SIG_DFL): Python's default
handler already raises KeyboardInterrupt. SIG_IGN is left alone.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.registry import RunRegistry

logger = logging.getLogger("ondine_otel")

Handler = Callable[[int, FrameType | None], Any] | int | None
Flush = Callable[[float, bool], None]


class ProcessTerminated(KeyboardInterrupt):
    """The process got a terminating signal while the run was active.

    A KeyboardInterrupt, so that ondine saves its checkpoint as on Ctrl-C and nothing catches
    it as an ordinary error.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"process terminated by {name}")


class SignalHandler:
    """Installed for SIGTERM/SIGINT by `install`; `uninstall` puts the previous ones back."""

    def __init__(self, registry: RunRegistry, flush: Flush, timeout: float) -> None:
        self._registry = registry
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
        if self._handling and not chained:  # signalled again while terminating: stop now
            _die(signum)
        self._handling = True
        if not chained and self._registry.active():
            self._terminate(signum)  # raises ProcessTerminated in the main thread
        worker = threading.Thread(
            target=self._end_and_flush,
            args=(signum, not chained, self._timeout),
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
        _die(signum)

    def _terminate(self, signum: int) -> None:
        deadline = time.monotonic() + self._timeout
        exiting = threading.Event()
        atexit.register(self._exit_as_signalled, signum, deadline, exiting)
        threading.Thread(
            target=self._watchdog,
            args=(signum, deadline, exiting),
            name="ondine-otel-signal-watchdog",
            daemon=True,
        ).start()
        raise ProcessTerminated(signum)

    def _exit_as_signalled(self, signum: int, deadline: float, exiting: threading.Event) -> None:
        """Exit hook (first to run: registered last): flush, then die by the signal."""
        exiting.set()
        self._end_and_flush(signum, True, max(deadline - time.monotonic(), 0.1))
        self.uninstall()
        _die(signum)

    def _watchdog(self, signum: int, deadline: float, exiting: threading.Event) -> None:
        """End the process by the deadline if the exception did not bring it to its exit."""
        halfway = deadline - self._timeout / 2
        if exiting.wait(max(halfway - time.monotonic(), 0.0)):
            time.sleep(max(deadline + 0.5 - time.monotonic(), 0.0))  # the exit hook's turn
        else:
            self._end_and_flush(signum, True, max(deadline - time.monotonic(), 0.1))
        os._exit(128 + signum)  # not signal.signal: only the main thread may call it

    def _end_and_flush(self, signum: int, exiting: bool, timeout: float) -> None:
        error = ProcessTerminated(signum)
        for run in self._registry.active():
            try:
                self._registry.end(run, error)
            except Exception as failure:  # noqa: BLE001 - end the others anyway
                report("ending a run on a signal", failure)
        try:
            self._flush(timeout, exiting)
        except Exception as failure:  # noqa: BLE001
            report("flushing telemetry on a signal", failure)


def _die(signum: int) -> None:
    """The signal's default action, now: the process ends as signalled (128 + signum)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install(registry: RunRegistry, flush: Flush, timeout: float) -> SignalHandler | None:
    """Install the handler for SIGTERM (and SIGINT where unhandled); None where impossible.

    `flush(timeout, exiting)` must return within about `timeout` seconds; `exiting` says the
    process is about to die (shut everything down) rather than go on under the application's
    own handler (flush only).
    """
    if threading.current_thread() is not threading.main_thread():
        logger.info("ondine-otel: not installing the SIGTERM handler outside the main thread")
        return None
    handler = SignalHandler(registry, flush, timeout)
    handler._install((signal.SIGTERM, signal.SIGINT))
    return handler
