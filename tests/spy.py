"""ContextSpy: an ondine observer that keeps what ondine handed the hooks, for comparisons."""

from __future__ import annotations

from typing import Any

from ondine.orchestration.observers import ExecutionObserver


class ContextSpy(ExecutionObserver):
    """Records the run's context, its ids as ondine generated them, and the stage order."""

    def __init__(self) -> None:
        self.context: Any = None
        self.trace_id_at_start = ""
        self.span_id_at_start = ""
        self.stages: list[str] = []

    def on_pipeline_start(self, pipeline: Any, context: Any) -> None:
        self.context = context
        self.trace_id_at_start = context.trace_id
        self.span_id_at_start = context.span_id

    def on_stage_start(self, stage: Any, context: Any) -> None:
        self.stages.append(stage.name)

    def on_stage_complete(self, stage: Any, context: Any, result: Any) -> None:
        pass

    def on_stage_error(self, stage: Any, context: Any, error: Exception) -> None:
        pass

    def on_pipeline_complete(self, context: Any, result: Any) -> None:
        pass

    def on_pipeline_error(self, context: Any, error: Exception) -> None:
        pass
