"""The lock-free tallies read exactly as prometheus_client's own classes would, given the same observations."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bastion.ops.tally import TallyCounter, TallyGauge, TallyHistogram

BUCKETS = (0.01, 0.02, 0.05, 0.1, 1, 300)
# On a bound (counted in it: `le`), between bounds, below the first, beyond the last, zero.
AMOUNTS = [0.01, 0.015, 0.001, 0.02, 0.5, 1.0, 299.9, 300, 301, 0.0, 12.5]


def exposed(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines, without prometheus_client's `_created` timestamps (which tallies omit)."""
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if not line.startswith("#") and "_created" not in line)


def test_a_histogram_reads_as_prometheus_clients_own():
    own, theirs = CollectorRegistry(), CollectorRegistry()
    tally = TallyHistogram("op_seconds", "Operations.", ("method", "tool"), BUCKETS)
    own.register(tally)
    reference = Histogram("op_seconds", "Operations.", ("method", "tool"), buckets=BUCKETS, registry=theirs)
    for n, amount in enumerate(AMOUNTS):
        labels = ("tools/call", "add" if n % 3 else "echo")
        tally.observe(labels, amount)
        reference.labels(*labels).observe(amount)
    assert exposed(own) == exposed(theirs)
    # echo saw 0.01 (on the bound), 0.02, 299.9 and 0.0
    assert 'op_seconds_bucket{le="0.01",method="tools/call",tool="echo"} 2.0' in exposed(own)
    assert 'op_seconds_count{method="tools/call",tool="echo"} 4.0' in exposed(own)


def test_counters_and_gauges_read_as_prometheus_clients_own():
    own, theirs = CollectorRegistry(), CollectorRegistry()
    counter = TallyCounter("decisions", "Decisions.", ("decision", "reason"))
    gauge = TallyGauge("sessions", "Sessions.")
    own.register(counter)
    own.register(gauge)
    reference = Counter("decisions", "Decisions.", ("decision", "reason"), registry=theirs)
    reference_gauge = Gauge("sessions", "Sessions.", registry=theirs)
    for decision, reason in [("allowed", "valid_token")] * 5 + [("refused", "no_token")] * 2:
        counter.inc((decision, reason))
        reference.labels(decision, reason).inc()
    for change in (1, 1, 1, -1):
        gauge.inc(change)
        reference_gauge.inc(change)
    assert exposed(own) == exposed(theirs)
    assert 'decisions_total{decision="allowed",reason="valid_token"} 5.0' in exposed(own)
    assert "sessions 2.0" in exposed(own)


def test_a_scrape_from_another_thread_while_the_loop_records_reads_well_formed_buckets():
    registry = CollectorRegistry()
    tally = TallyHistogram("op_seconds", "Operations.", ("tool",), BUCKETS)
    registry.register(tally)
    stop = threading.Event()
    scrapes: list[str] = []

    def scrape() -> None:
        while not stop.is_set() and len(scrapes) < 200:
            scrapes.append(generate_latest(registry).decode())

    reader = threading.Thread(target=scrape)
    reader.start()
    for n in range(20000):
        tally.observe((f"t{n % 7}",), 0.003)
    stop.set()
    reader.join()
    final = generate_latest(registry).decode()
    assert sum(float(line.split()[-1]) for line in final.splitlines() if line.startswith("op_seconds_count")) == 20000
    assert scrapes
    for text in scrapes:  # each read parses, and each series' buckets only grow towards +Inf
        for family in text_string_to_metric_families(text):
            by_series: dict[str, list[float]] = {}
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    by_series.setdefault(sample.labels["tool"], []).append(sample.value)
            assert all(counts == sorted(counts) for counts in by_series.values())
