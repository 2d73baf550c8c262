"""A strict checker for the TraceQL subset the dashboards use (there is no Tempo here to ask).

It tokenises and parses a query with Tempo's grammar for spanset filters, spanset operators
(logical and structural), pipelines (`select`, `by`, aggregates compared with a value) and
query hints, and checks types: `status` against error/ok/unset, `kind` against span kinds,
durations against duration literals, regexes compile. Attribute names must be ones the caller
knows (the contract's), so a typo fails here rather than in a panel that silently finds nothing.
A bare trace id (hex) is accepted: Grafana's Tempo data source looks such a query up by id.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<string>"(?:[^"\\]|\\["\\])*")
    |(?P<duration>\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)(?![A-Za-z0-9_]))
    |(?P<number>-?\d+(?:\.\d+)?)
    |(?P<op>&>>|&<<|!>>|!<<|>>|<<|&&|\|\||=~|!~|!=|>=|<=|&>|&<|&~|!>|!<|[{}()=<>~|,!*/+-])
    |(?P<scoped>(?:span|trace|event|link|instrumentation):[A-Za-z]+)
    |(?P<attr>(?:span|resource|event|link|instrumentation)?\.(?:"(?:[^"\\]|\\["\\])*"|[A-Za-z_][A-Za-z0-9_.\-/]*))
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)

STATUS = {"error", "ok", "unset"}
KINDS = {"unspecified", "internal", "server", "client", "producer", "consumer"}
_DURATION_FIELDS = {"duration", "span:duration", "trace:duration", "traceDuration",
                    "event:timeSinceStart"}
_STRING_FIELDS = {"name", "span:name", "statusMessage", "span:statusMessage", "rootName",
                  "trace:rootName", "rootServiceName", "trace:rootService", "trace:id",
                  "span:id", "span:parentID", "event:name", "link:traceID", "link:spanID",
                  "instrumentation:name", "instrumentation:version"}
_INTRINSICS = (_DURATION_FIELDS | _STRING_FIELDS
               | {"status", "span:status", "kind", "span:kind", "span:childCount"})
_SPANSET_OPS = {"&&", "||", ">>", "<<", ">", "<", "~", "&>>", "&<<", "&>", "&<", "&~",
                "!>>", "!<<", "!>", "!<", "!~"}
_COMPARE = {"=", "!=", ">", ">=", "<", "<=", "=~", "!~"}
_AGGREGATES = {"count", "avg", "max", "min", "sum"}
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")


class TraceQLError(ValueError):
    """The query is not valid TraceQL (of the supported subset)."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(query):
        match = _TOKEN.match(query, at)
        if match is None:
            raise TraceQLError(f"unexpected character {query[at]!r} at {at} in {query!r}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    return tokens


def _unquote(text: str) -> str:
    return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")


class _Parser:
    def __init__(self, query: str, attributes: Collection[str]) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.pos = 0
        self.attributes = attributes
        self.fields: list[str] = []

    # --- helpers -------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def fail(self, message: str) -> TraceQLError:
        token = self.peek()
        where = f"at {token.at} ({token.text!r})" if token else "at the end"
        return TraceQLError(f"{message} {where} in {self.query!r}")

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        token = self.peek()
        if token is None or (text is not None and token.text != text) or (
            kind is not None and token.kind != kind
        ):
            raise self.fail(f"expected {text or kind}")
        self.pos += 1
        return token

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token is not None and token.text in texts

    # --- grammar -------------------------------------------------------------------------
    def query_(self) -> None:
        self.spanset_expression()
        while self.at("|"):
            self.take("|")
            self.stage()
        if self.at("with"):
            self.hints()
        if self.peek() is not None:
            raise self.fail("unexpected token")

    def spanset_expression(self) -> None:
        self.spanset_term()
        while self.peek() is not None and self.peek().text in _SPANSET_OPS:  # type: ignore[union-attr]
            self.pos += 1
            self.spanset_term()

    def spanset_term(self) -> None:
        if self.at("("):
            self.take("(")
            self.spanset_expression()
            self.take(")")
            return
        self.take("{")
        if not self.at("}"):
            self.field_or()
        self.take("}")

    def field_or(self) -> None:
        self.field_and()
        while self.at("||"):
            self.take("||")
            self.field_and()

    def field_and(self) -> None:
        self.field_atom()
        while self.at("&&"):
            self.take("&&")
            self.field_atom()

    def field_atom(self) -> None:
        if self.at("("):
            self.take("(")
            self.field_or()
            self.take(")")
            return
        name = self.field()
        op = self.take(kind="op")
        if op.text not in _COMPARE:
            raise TraceQLError(f"{op.text!r} is not a comparison (after {name}) in {self.query!r}")
        self.value(name, op.text)

    def field(self) -> str:
        token = self.peek()
        if token is None:
            raise self.fail("expected a field")
        if token.kind == "attr":
            self.pos += 1
            scope, _, rest = token.text.partition(".")
            name = _unquote(rest) if rest.startswith('"') else rest
            if name not in self.attributes:
                raise TraceQLError(f"unknown attribute {name!r} in {self.query!r}")
            self.fields.append(name)
            return f"{scope}.{name}"
        if token.kind in ("scoped", "word") and token.text in _INTRINSICS:
            self.pos += 1
            return token.text
        raise self.fail("expected an intrinsic or a scoped attribute")

    def value(self, field: str, op: str) -> None:
        token = self.take()
        bare = field.split(":")[-1]
        if bare == "status":
            if token.text not in STATUS or op not in ("=", "!="):
                raise TraceQLError(f"status compares = or != with {sorted(STATUS)}: {self.query!r}")
        elif bare == "kind":
            if token.text not in KINDS or op not in ("=", "!="):
                raise TraceQLError(f"kind compares = or != with {sorted(KINDS)}: {self.query!r}")
        elif field in _DURATION_FIELDS:
            if token.kind != "duration" or op in ("=~", "!~"):
                raise TraceQLError(f"{field} needs a duration literal: {self.query!r}")
        elif op in ("=~", "!~"):
            if token.kind != "string":
                raise TraceQLError(f"{op} needs a string regex: {self.query!r}")
            try:
                re.compile(_unquote(token.text))
            except re.error as error:
                raise TraceQLError(f"bad regex {token.text}: {error} in {self.query!r}") from None
        elif field in _STRING_FIELDS and token.kind != "string":
            raise TraceQLError(f"{field} needs a string: {self.query!r}")
        elif token.kind not in ("string", "number", "duration") and token.text not in (
            "true", "false", "nil"
        ):
            raise TraceQLError(f"{token.text!r} is not a value in {self.query!r}")

    def stage(self) -> None:
        word = self.take(kind="word").text
        if word in ("select", "by"):
            self.take("(")
            self.field()
            while word == "select" and self.at(","):
                self.take(",")
                self.field()
            self.take(")")
        elif word in _AGGREGATES:
            self.take("(")
            if word != "count":
                self.field()
            self.take(")")
            op = self.take(kind="op")
            if op.text not in _COMPARE - {"=~", "!~"}:
                raise self.fail("expected a comparison")
            if self.take().kind not in ("number", "duration"):
                raise TraceQLError(f"{word}() compares with a number: {self.query!r}")
        else:
            raise TraceQLError(f"unknown pipeline stage {word!r} in {self.query!r}")

    def hints(self) -> None:
        self.take("with")
        self.take("(")
        while True:
            self.take(kind="word")
            self.take("=")
            if self.take().text not in ("true", "false") and self.tokens[self.pos - 1].kind not in (
                "number", "string", "duration"
            ):
                raise self.fail("bad hint value")
            if not self.at(","):
                break
            self.take(",")
        self.take(")")


def check(query: str, attributes: Collection[str]) -> list[str]:
    """Raise `TraceQLError` unless `query` parses; returns the attribute names it uses."""
    if _TRACE_ID.match(query.strip()):
        return []
    parser = _Parser(query, attributes)
    parser.query_()
    return parser.fields
