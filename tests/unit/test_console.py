"""The span tree: structure by parent id, time order, error status, attributes, events, folding."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ondine_otel.cli.console import VISIBLE_CHAT_SPANS, print_trace, render_trace
from ondine_otel.telemetry import semconv


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test_console")
    provider.shutdown()


def _render(spans: Sequence[ReadableSpan]) -> str:
    console = Console(record=True, width=120, color_system=None)
    print_trace(spans, console)
    return console.export_text()


def _label(node: Tree) -> str:
    assert isinstance(node.label, Text)
    return node.label.plain


def _make_run(tracer: Tracer, chats: int, failing: Collection[int] = ()) -> None:
    run_attrs: dict[str, AttributeValue] = {
        semconv.ATTR_ROWS_TOTAL: chats,
        semconv.ATTR_COST_USD: 0.0021,
        semconv.ATTR_LLM_MODEL: "gpt-4o-mini",
        "service.internal": "hidden",
    }
    with tracer.start_as_current_span(semconv.SPAN_RUN, attributes=run_attrs) as run:
        with tracer.start_as_current_span(f"{semconv.SPAN_STAGE_PREFIX} DataLoader"):
            pass
        with tracer.start_as_current_span(f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation"):
            for i in range(chats):
                attrs: dict[str, AttributeValue] = {
                    semconv.GEN_AI_USAGE_INPUT_TOKENS: 40 + i,
                    semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 1,
                    semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                    semconv.ATTR_COST_USD: 0.0000066,
                }
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attrs) as chat:
                    if i in failing:
                        chat.set_status(Status(StatusCode.ERROR, "simulated provider error"))
        run.add_event(semconv.EVENT_CHECKPOINT, {semconv.ATTR_CHECKPOINT_ROW: chats - 1})


def test_tree_follows_parent_ids_in_start_order(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    _make_run(tracer, chats=2)
    spans = exporter.get_finished_spans()
    # The exporter lists spans by end time (children first); the tree must not care.
    tree = render_trace(spans)

    assert _label(tree).startswith(f"{len(spans)} spans · trace ")
    (run,) = tree.children
    assert _label(run).startswith(semconv.SPAN_RUN)
    assert [_label(c).split("  ")[0] for c in run.children] == [
        "ondine.stage DataLoader",
        "ondine.stage LLMInvocation",
        f"◆ {semconv.EVENT_CHECKPOINT}",
    ]
    llm_stage = run.children[1]
    assert [_label(c).split("  ")[0] for c in llm_stage.children] == ["chat gpt-4o-mini"] * 2
    assert "gen_ai.usage.input_tokens=40" in _label(llm_stage.children[0])
    assert "gen_ai.usage.input_tokens=41" in _label(llm_stage.children[1])


def test_node_content(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    _make_run(tracer, chats=2, failing={1})
    text = _render(exporter.get_finished_spans())

    run_line = next(line for line in text.splitlines() if semconv.SPAN_RUN in line)
    assert " ms" in run_line or " s" in run_line
    assert "ondine.rows.total=2" in text
    assert "ondine.cost.usd=0.0021" in text
    assert "ondine.llm.model=gpt-4o-mini" in text
    assert "service.internal" not in text  # only ondine.* / gen_ai.* attributes
    assert "ERROR: simulated provider error" in text
    assert "◆ ondine.checkpoint" in text and "ondine.checkpoint.row=1" in text
    # LLM call spans show tokens and cost only.
    chat_block = text[text.index("chat gpt-4o-mini") :]
    first_chat = chat_block.split("chat gpt-4o-mini")[1]
    assert "gen_ai.usage.output_tokens=1" in first_chat
    assert "ondine.cost.usd=0.0000066" in first_chat
    assert "gen_ai.request.model" not in first_chat


def test_error_status_is_red(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    _make_run(tracer, chats=1, failing={0})
    tree = render_trace(exporter.get_finished_spans())
    chat = tree.children[0].children[1].children[0]
    assert isinstance(chat.label, Text)
    error_spans = [s for s in chat.label.spans if "ERROR" in chat.label.plain[s.start : s.end]]
    assert error_spans and all("red" in str(s.style) for s in error_spans)


def test_many_chat_siblings_collapse_into_one_line(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    chats = 50
    _make_run(tracer, chats=chats, failing={2, 30, 40})
    tree = render_trace(exporter.get_finished_spans())
    llm_stage = tree.children[0].children[1]

    labels = [_label(c) for c in llm_stage.children]
    assert len(labels) == VISIBLE_CHAT_SPANS + 1
    assert all(label.startswith("chat gpt-4o-mini") for label in labels[:VISIBLE_CHAT_SPANS])
    hidden = chats - VISIBLE_CHAT_SPANS
    assert labels[-1] == f"… {hidden} more chat spans (2 with errors)"
    # The visible ones are the earliest.
    assert "input_tokens=40" in labels[0] and "input_tokens=42" in labels[2]

    text = _render(exporter.get_finished_spans())
    assert text.count("chat gpt-4o-mini") == VISIBLE_CHAT_SPANS
    assert f"… {hidden} more chat spans" in text


def test_other_siblings_and_events_are_never_folded(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("ondine.stage LLMInvocation") as stage:
        for i in range(10):
            with tracer.start_as_current_span("chat m"):
                pass
            if i % 4 == 3:
                stage.add_event(semconv.EVENT_PROGRESS, {semconv.ATTR_PROGRESS_PERCENT: i * 10})
        for _ in range(5):
            with tracer.start_as_current_span("ondine.other"):
                pass
    tree = render_trace(exporter.get_finished_spans())
    labels = [_label(c).split("  ")[0] for c in tree.children[0].children]
    assert labels == [
        "chat m",
        "chat m",
        "chat m",
        "… 7 more chat spans",  # where the 4th chat started
        "◆ ondine.progress",
        "◆ ondine.progress",
        *["ondine.other"] * 5,
    ]


def test_spans_whose_parent_is_missing_become_roots(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
        pass
    with tracer.start_as_current_span("second root"):
        pass
    spans = [s for s in exporter.get_finished_spans() if s.name != "parent"]
    tree = render_trace(spans)
    assert [_label(c).split("  ")[0] for c in tree.children] == ["child", "second root"]
    assert _label(tree) == "2 spans in 2 traces"


def test_empty_input_renders() -> None:
    assert _render([]).strip() == "0 spans"
