"""ondine's `llm_call` events: the fallback for a stage whose client cannot be wrapped.

ondine emits `llm_call` from inside the per-row asyncio task with placeholder ids, so the event
cannot say which run or stage it belongs to; the current OpenTelemetry context can, because the
LLMInvocation stage span is current on the thread that runs those tasks. Events of a run whose
client is wrapped are ignored: the wrapper already saw those calls.
"""

from __future__ import annotations

from typing import Any

from ondine.observability.base import PipelineObserver
from ondine.observability.dispatcher import ObserverDispatcher

from ondine_otel.telemetry import call_record
from ondine_otel.telemetry.guard import guarded
from ondine_otel.telemetry.run import current_run


class LLMCallListener(PipelineObserver):
    """Receives ondine's `llm_call` events and records them on the run current here."""

    @guarded("on_llm_call")
    def on_llm_call(self, event: Any) -> None:
        run = current_run()
        if run is None or run.finished or run.llm.wrapped:
            return
        run.llm.record(call_record.from_event(event))


def listen_to_llm_events(llm_client: Any) -> None:
    """Make ondine send this client's `llm_call` events to us (adding a dispatcher if needed)."""
    dispatcher = getattr(llm_client, "_observer_dispatcher", None)
    setter = getattr(llm_client, "set_observer_dispatcher", None)
    if dispatcher is None:
        if callable(setter):
            setter(ObserverDispatcher([LLMCallListener()]))
        return
    listeners = getattr(dispatcher, "observers", None)
    if isinstance(listeners, list) and not any(
        isinstance(existing, LLMCallListener) for existing in listeners
    ):
        listeners.append(LLMCallListener())
