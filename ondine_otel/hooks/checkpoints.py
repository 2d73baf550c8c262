"""StateManager wrappers: checkpoints as span events, and the trace context carried across resume.

ondine's checkpoint JSON has no trace ids, so a resumed run would start an unrelated trace. Before
each save we store the run's traceparent in `intermediate_data` (which ondine serialises); on
load we read it back and hand it to the resumed run as a span Link.
"""

from __future__ import annotations

import os
from typing import Any

from ondine_otel.hooks import execute_call
from ondine_otel.telemetry import ids, semconv
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RestoredCheckpoint, checkpoint_attributes


def _context_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("context")


def checkpoint_size(state_manager: Any, session_id: Any) -> int | None:
    """Bytes of the checkpoint file just written, where the storage is a local file."""
    path_for = getattr(getattr(state_manager, "storage", None), "_get_checkpoint_path", None)
    if not callable(path_for):
        return None
    try:
        return os.path.getsize(path_for(session_id))
    except (OSError, TypeError, ValueError):
        return None


class CheckpointWrappers:
    """The StateManager wrappers of one run registry."""

    def __init__(self, registry: RunRegistry) -> None:
        self.registry = registry

    def save(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> Any:  # fmt: skip
        """Around `StateManager.save_checkpoint(context)`."""
        registry = self.registry
        context = _context_arg(args, kwargs)
        run = registry.run(getattr(context, "session_id", None))
        if run is not None:
            try:
                traceparent = run.traceparent()
                data = getattr(context, "intermediate_data", None)
                if traceparent and isinstance(data, dict):
                    data[semconv.CHECKPOINT_TRACEPARENT_KEY] = traceparent
            except Exception as error:  # noqa: BLE001
                report("storing the trace context in a checkpoint", error)
        try:
            saved = wrapped(*args, **kwargs)
        except BaseException:
            if run is not None and run.end_after_checkpoint is not None:
                registry.end(run, run.end_after_checkpoint)
            raise
        if run is not None:
            try:
                size = checkpoint_size(instance, run.session_id) if saved else None
                run.checkpoint(context, bool(saved), size)
                if run.end_after_checkpoint is not None:
                    registry.end(run, run.end_after_checkpoint)
            except Exception as error:  # noqa: BLE001
                report("recording a checkpoint event", error)
        return saved

    def load(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> Any:  # fmt: skip
        """Around `StateManager.load_checkpoint(session_id)`: remember the crashed run's
        context for the resumed run that is about to start."""
        registry = self.registry
        context = wrapped(*args, **kwargs)
        if context is None:
            return context
        try:
            data = getattr(context, "intermediate_data", None)
            raw = data.get(semconv.CHECKPOINT_TRACEPARENT_KEY) if isinstance(data, dict) else None
            parent = ids.parse_traceparent(raw)
            attributes = checkpoint_attributes(context)
            attributes[semconv.ATTR_CHECKPOINT_SAVED] = True
            if parent is not None:
                attributes[semconv.ATTR_RESUMED_FROM_TRACE_ID] = f"{parent.trace_id:032x}"
            call = execute_call.current()
            if call is None:
                return context  # not a run being resumed: nothing will claim it
            session_id = getattr(context, "session_id", None)
            size = checkpoint_size(instance, session_id)
            if size is not None:
                attributes[semconv.ATTR_CHECKPOINT_BYTES] = size
            registry.hold_restore(session_id, RestoredCheckpoint(parent, attributes))
            call.restored_sessions.append(session_id)
        except Exception as error:  # noqa: BLE001
            report("reading the trace context from a checkpoint", error)
        return context
