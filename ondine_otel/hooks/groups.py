"""Wrappers for the calls that make groups of runs: streams, async runs, composed calls.

ondine runs a stream's chunks, and `execute_async()`'s `execute()`, on other threads (a runner
thread, `run_in_executor`), which carry neither the caller's OpenTelemetry context nor ours. So
each user-level call is handed over explicitly, keyed by the pipeline object that will run:
- `execute_stream*` opens a `Stream` (keyed by the streaming pipeline) and ends it with the
  call; `_process_chunk_async` marks its chunk (a ContextVar of its task) for the chunk
  pipeline's `execute_async`;
- `execute_async` hands the caller's context (or the stream's) and the chunk to the
  `execute()` that runs on the executor thread (keyed by the pipeline), which attaches it;
- `PipelineComposer.execute` names each column pipeline for the `execute()`s it makes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context

from ondine_otel.hooks.host import Host
from ondine_otel.hooks.observer import RunObserver
from ondine_otel.telemetry.groups import Composition, Stream, StreamClosed

#: The stream chunk the current task is running, for the chunk pipeline's execute_async.
CHUNK: ContextVar[tuple[Stream, int] | None] = ContextVar("ondine_otel_chunk", default=None)
#: The composed call running on this thread.
COMPOSITION: ContextVar[Composition | None] = ContextVar("ondine_otel_composition", default=None)


@dataclass(frozen=True)
class HandedOver:
    """What an `execute()` on another thread needs to know about the call it serves."""

    context: otel_context.Context
    stream: Stream | None = None
    chunk: int | None = None


@contextmanager
def outcome(
    end: Callable[[BaseException | None], None], stream: Stream | None = None
) -> Iterator[None]:
    """Run the body, then `end(error)` with how it ended: None, what it raised, or (for a
    stream's generator closed before its end) a `StreamClosed`."""
    error: BaseException | None = None
    try:
        yield
    except GeneratorExit:
        chunks = stream.chunks if stream is not None else 0
        error = StreamClosed(f"the consumer stopped the stream after {chunks} chunks")
        raise
    except BaseException as raised:
        error = raised
        raise
    finally:
        end(error)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, default: Any) -> Any:
    return args[0] if args else kwargs.get(name, default)


class GroupWrappers:
    """The wrappers of one host (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self._host = host

    # --- streams ---------------------------------------------------------------------------
    def _open(self, pipeline: Any, method: str, chunk_size: int | None) -> Stream:
        observer = next(
            (o for o in getattr(pipeline, "observers", ()) if isinstance(o, RunObserver)), None
        )
        frame = getattr(pipeline, "dataframe", None)
        expected = len(frame) if frame is not None and hasattr(frame, "__len__") else None
        stream = Stream(method, chunk_size, expected, otel_context.get_current(), observer)
        self._host.handovers.put("stream", pipeline, stream)
        return stream

    def _close(self, pipeline: Any, stream: Stream, error: BaseException | None) -> None:
        self._host.handovers.drop("stream", pipeline, stream)
        stream.end(self._host.registry, error)

    def execute_stream(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        chunk_size = _argument(args, kwargs, "chunk_size", None)
        return self._stream(wrapped(*args, **kwargs), instance, chunk_size)

    def _stream(self, inner: Iterator[Any], pipeline: Any, chunk_size: int | None
                ) -> Iterator[Any]:  # fmt: skip
        # A generator: like ondine's own, nothing starts before the first next().
        stream = self._open(pipeline, "execute_stream", chunk_size)
        with outcome(lambda error: self._close(pipeline, stream, error), stream):
            yield from inner  # a close() reaches ondine's generator first (it stops the runner)

    def execute_stream_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        chunk_size = _argument(args, kwargs, "chunk_size", 10000)
        return self._stream_async(wrapped(*args, **kwargs), instance, chunk_size)

    async def _stream_async(
        self, inner: AsyncIterator[Any], pipeline: Any, chunk_size: int | None
    ) -> AsyncIterator[Any]:
        opened = self._host.handovers.get("stream", pipeline)
        if opened is not None:  # execute_stream runs this on its runner thread: same stream
            opened.chunk_size = chunk_size
        stream = opened or self._open(pipeline, "execute_stream_async", chunk_size)

        def end(error: BaseException | None) -> None:
            if opened is None:  # a stream execute_stream opened is ended there
                self._close(pipeline, stream, error)

        try:
            with outcome(end, stream):
                async for item in inner:
                    yield item
        finally:
            await inner.aclose()  # type: ignore[attr-defined]

    def execute_stream_pipelined(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # ondine computes every chunk inside this call and returns a list's iterator.
        stream = self._open(
            instance, "execute_stream_pipelined", _argument(args, kwargs, "chunk_size", 10000)
        )
        with outcome(lambda error: self._close(instance, stream, error)):
            return wrapped(*args, **kwargs)

    async def _chunk(self, wrapped: Any, stream: Stream, index: int, args: Any, kwargs: Any
                     ) -> Any:  # fmt: skip
        token = CHUNK.set((stream, index))
        try:
            return await wrapped(*args, **kwargs)
        finally:
            CHUNK.reset(token)

    def process_chunk(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Around `_process_chunk_async(chunk_df, execution_id, chunk_index)` of the stream."""
        stream = self._host.handovers.get("stream", instance)
        if stream is None:
            return wrapped(*args, **kwargs)
        index = args[2] if len(args) > 2 else kwargs.get("chunk_index", stream.chunks)
        return self._chunk(wrapped, stream, int(index), args, kwargs)

    # --- execute_async -------------------------------------------------------------------
    def execute_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return self._execute_async(wrapped, instance, args, kwargs)

    async def _execute_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        chunk = CHUNK.get()
        if chunk is not None:
            stream, index = chunk
            handed = HandedOver(stream.caller, stream, index)
        else:
            handed = HandedOver(otel_context.get_current())
        self._host.handovers.put("execute", instance, handed)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            self._host.handovers.drop("execute", instance, handed)

    # --- PipelineComposer ------------------------------------------------------------------
    def compose(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        columns = {
            id(entry[1]): str(entry[0])
            for entry in getattr(instance, "column_pipelines", ())
            if isinstance(entry, (tuple, list)) and len(entry) >= 2
        }
        composition = Composition(columns)
        token = COMPOSITION.set(composition)

        def end(error: BaseException | None) -> None:
            COMPOSITION.reset(token)
            composition.end(error)

        with outcome(end):
            return wrapped(*args, **kwargs)
