"""Prometheus metrics of the API (served at ``/metrics`` by BentoML with its own).

Created on first use, never at import: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in each worker
before the service starts, and metrics created after that are summed over every worker. The share
of events flagged as bots cannot be summed, so ``/metrics`` derives it from the summed counters
(:func:`with_bot_share`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

_LOCK = threading.Lock()
_METRICS: Metrics | None = None

REQUESTS = "botfilter_http_requests"
LATENCY = "botfilter_http_request_duration_seconds"
EVENTS = "botfilter_events"
BOTS = "botfilter_bot_events"
SHARE = "botfilter_bot_share"
STAGES = "botfilter_scoring_stage_seconds"
BATCH = "botfilter_scoring_batch_events"
_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Metrics:
    """The API's own metrics."""

    requests: Any  # Counter: endpoint, code
    latency: Any  # Histogram: endpoint
    events: Any  # Counter: channel, outcome (scored / duplicate / error)
    bots: Any  # Counter: channel
    stages: Any  # Histogram: stage (contract, keys, lookup, frame, features, model, store)
    batch: Any  # Histogram: events per scoring call (requests merged under load)

    def request(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one HTTP request and its latency."""
        self.requests.labels(endpoint=endpoint, code=str(code)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def outcome(
        self,
        scored: Mapping[str, int],
        flagged: Mapping[str, int],
        duplicates: int,
        errors: int,
    ) -> None:
        """Count the events of one scored micro-batch."""
        for channel, n in scored.items():
            self.events.labels(channel=channel, outcome="scored").inc(n)
            self.bots.labels(channel=channel).inc(flagged.get(channel, 0))
        if duplicates:
            self.events.labels(channel="any", outcome="duplicate").inc(duplicates)
        if errors:
            self.events.labels(channel="any", outcome="error").inc(errors)

    def scoring_call(self, events: int, seconds: Mapping[str, float]) -> None:
        """Record one scoring call: its size and the time of each stage."""
        self.batch.observe(events)
        for stage, value in seconds.items():
            self.stages.labels(stage=stage).observe(value)


def metrics() -> Metrics:
    """The process-wide metrics, created on first use."""
    global _METRICS
    with _LOCK:
        if _METRICS is None:
            _METRICS = Metrics(
                requests=Counter(
                    REQUESTS, "API requests by endpoint and status.", ["endpoint", "code"]
                ),
                latency=Histogram(LATENCY, "API request latency.", ["endpoint"], buckets=_BUCKETS),
                events=Counter(
                    EVENTS, "Events answered, by channel and outcome.", ["channel", "outcome"]
                ),
                bots=Counter(BOTS, "Newly scored events flagged as bots, by channel.", ["channel"]),
                stages=Histogram(STAGES, "Time per scoring stage.", ["stage"], buckets=_BUCKETS),
                batch=Histogram(
                    BATCH,
                    "Events per scoring call (concurrent requests are merged).",
                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
                ),
            )
        return _METRICS


def with_bot_share(text: str) -> str:
    """Append ``botfilter_bot_share{channel}`` (bots / scored, over every worker) to a scrape."""
    scored: dict[str, float] = {}
    bots: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{EVENTS}_total" and sample.labels.get("outcome") == "scored":
                ch = sample.labels["channel"]
                scored[ch] = scored.get(ch, 0.0) + sample.value
            elif sample.name == f"{BOTS}_total":
                ch = sample.labels["channel"]
                bots[ch] = bots.get(ch, 0.0) + sample.value
    if not scored:
        return text
    lines = [
        f"# HELP {SHARE} Share of newly scored events flagged as bots, by channel.",
        f"# TYPE {SHARE} gauge",
    ]
    for ch in sorted(scored):
        if scored[ch] > 0:
            lines.append(f'{SHARE}{{channel="{ch}"}} {bots.get(ch, 0.0) / scored[ch]!r}')
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
