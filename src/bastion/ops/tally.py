"""Counters and histograms that the event loop changes without a lock, read by prometheus_client at each scrape.

prometheus_client takes a lock for every value it changes (two for each histogram observation): about 1.4 us of
every tools/call with metrics on, 3 to 4 times that in a busy server (bench/operations.py). Bastion records its
metrics from the event loop's thread only, so plain lists do: a scrape (on that thread too, or between two of
its steps) reads them through a collector, in the same exposition format. Under `--workers` the values must
reach the shared folder, so there Metrics uses prometheus_client's own classes (ops/metrics.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class TallyCounter(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        self._values[labels] = self._values.get(labels, 0) + amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, total in list(self._values.items()):
            family.add_metric(list(labels), total)
        yield family


class TallyGauge(Collector):
    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self._value = 0.0

    def inc(self, amount: float) -> None:
        self._value += amount

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self._value)


class TallyHistogram(Collector):
    """Each label set's observations per bucket (not yet cumulative: one increment each), then their sum."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self._bounds = [float(b) for b in buckets]
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], amount: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self._bounds) + 2)  # the bounds, +Inf, the sum
        series[bisect_left(self._bounds, amount)] += 1  # `le`: the first bound at or above the amount
        series[-1] += amount

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        names = [*(floatToGoString(b) for b in self._bounds), "+Inf"]  # type: ignore[no-untyped-call]
        for labels, series in list(self._series.items()):
            series = series[:]  # a copy: the metrics port's thread reads while the loop records
            counts, running = [], 0.0
            for bound, count in zip(names, series[:-1], strict=True):
                running += count
                counts.append((bound, running))
            family.add_metric(list(labels), counts, series[-1])
        yield family
