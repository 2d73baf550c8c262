"""A CollectorRegistry whose collections never overlap (opentelemetry-python#5258).

The PrometheusMetricReader's collector appends each collection to a deque and then pops the
deque empty, so two collections at once (an HTTP scrape and a Pushgateway push) can each see
the other's data or none: one of them comes back without our series. Serialising collection
of the registry both serve from fixes that for every reader subclass, at the cost of a scrape
waiting for a push's collection (milliseconds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample


class SerialRegistry(CollectorRegistry):
    """``collect()`` (and restricted scrapes, ``?name[]=``) run one at a time."""

    def __init__(self, auto_describe: bool = False) -> None:
        super().__init__(auto_describe=auto_describe)
        self._collecting = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        # Materialised under the lock: a generator holding it across yields could deadlock a
        # consumer that stops early.
        with self._collecting:
            collected = list(super().collect())
        yield from collected

    def restricted_registry(self, names: Iterable[str]) -> _Restricted:  # type: ignore[override]
        return _Restricted(self, set(names))


class _Restricted:
    """The samples named in a scrape's ``name[]`` parameters, collected through the lock."""

    def __init__(self, registry: SerialRegistry, names: set[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterator[Metric]:
        return filtered(self._registry.collect(), lambda sample: sample.name in self._names)


def filtered(families: Iterable[Metric], keep: Callable[[Sample], bool]) -> Iterator[Metric]:
    """The families with only the samples `keep` accepts; families left empty are dropped."""
    for family in families:
        samples = [sample for sample in family.samples if keep(sample)]
        if samples:
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = samples
            yield kept
