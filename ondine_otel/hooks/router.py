"""Failed deployment attempts inside a litellm Router call: ERROR `chat` spans of their own.

With `with_router(model_list=[...])` ondine's client makes one `Router.acompletion` call; the
Router fails over between deployments (429s, timeouts) inside it, so the client wrapper sees
only the final outcome. litellm reports every attempt to its callbacks
(`CustomLogger.async_log_failure_event`), in the call's own task, so the run is found in the
OpenTelemetry context exactly as the client wrapper finds it. Each failed attempt becomes a
`CallRecord` with its error and the deployment's safe identity (the id the user gave it, else
its provider/model and API host: never a key, nothing derived from one, and never litellm's raw
parameters, which hold the key). The successful attempt stays the call's span, from the client
wrapper.

litellm copies its callback list on first use and never notices later removals, so one logger
is registered per process and stays; it does nothing while no ondine run is current. litellm is
never imported by ondine-otel: the logger is made when a run's LLM stage starts in a process
that already uses litellm (its import adds global warning filters and over 100 MB).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from time import time_ns
from typing import Any
from urllib.parse import urlsplit

from ondine_otel.telemetry import call_record
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.run import current_run

#: litellm's id for a deployment the user gave none (a hex SHA-256 of its parameters).
_GENERATED_ID = re.compile(r"[0-9a-f]{64}")


def deployment_of(kwargs: dict[str, Any]) -> str | None:
    """A deployment's safe identity from litellm's callback arguments: the id the user gave
    it, else its provider/model and API host (`openai/gpt-4o-mini@eu.example.com`).

    A deployment without an id gets litellm's own: a SHA-256 over its parameters, API key
    included. That says nothing to a reader and is a stable fingerprint of the key, so it is
    never used.
    """
    params = kwargs.get("litellm_params") or {}
    info = params.get("model_info") or {}
    given = str(info.get("id") or "")
    if given and not _GENERATED_ID.fullmatch(given):
        return given
    model, provider = kwargs.get("model"), params.get("custom_llm_provider")
    if model and provider and not str(model).startswith(f"{provider}/"):
        model = f"{provider}/{model}"
    try:
        host = urlsplit(str(params.get("api_base") or "")).hostname
    except ValueError:
        host = None
    named = "@".join(str(part) for part in (model, host) if part)
    return named or None


def _ns(stamp: Any, default: int) -> int:
    if isinstance(stamp, datetime):
        return int(stamp.timestamp() * 1e9)
    if isinstance(stamp, (int, float)):
        return int(stamp * 1e9)
    return default


async def _record_failure(kwargs: Any, start_time: Any, end_time: Any) -> None:
    """One failed attempt of a Router call, on the run current here (if any)."""
    try:
        run = current_run()
        if run is None or run.finished or not isinstance(kwargs, dict):
            return
        if not ((kwargs.get("litellm_params") or {}).get("model_info")):
            return  # a plain litellm call: the client wrapper records its outcome
        error = kwargs.get("exception")
        if not isinstance(error, BaseException):
            return
        end = _ns(end_time, time_ns())
        run.llm.record(
            call_record.failed_attempt(_ns(start_time, end), end, error, deployment_of(kwargs))
        )
    except Exception as failure:  # noqa: BLE001 - litellm's call must go on
        report("recording a failed router attempt", failure)


def router_logger() -> Any:
    """A litellm `CustomLogger` that records failed attempts (see the module docstring)."""
    # Only called once litellm has imported this module itself: nothing is imported here
    # (an import on this thread while litellm is being imported on another could deadlock).
    base: Any = sys.modules["litellm.integrations.custom_logger"].CustomLogger

    async def async_log_failure_event(
        self: Any, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        await _record_failure(kwargs, start_time, end_time)

    attempts = type("RouterAttempts", (base,), {"async_log_failure_event": async_log_failure_event})

    return attempts()
