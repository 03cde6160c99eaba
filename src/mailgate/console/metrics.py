"""/metrics: Prometheus text read from the queue at scrape time.

A custom collector asks the queue for its figures on each scrape, so no counter lives in
process memory: the numbers survive restarts and agree with `mailgate status`. Each app
gets its own registry (no global state shared between tests or gateways).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailgate.config.store import Store
from mailgate.gateway.queue import QueueStore, State

#: Message states whose count only grows (finished messages), as counters.
_FINISHED = (State.SENT, State.FAILED)


class QueueCollector(Collector):
    def __init__(
        self, queue: QueueStore, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self.queue = queue
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self.queue_metrics()
        yield from self._recipients()
        yield from self._events()
        yield from self._token()

    def queue_metrics(self) -> Iterator[Metric]:
        counts = self.queue.counts()
        accepted = CounterMetricFamily(
            "mailgate_messages_accepted", "Messages accepted into the queue since it was made."
        )
        accepted.add_metric([], float(self.queue.accepted_total()))
        yield accepted
        finished = CounterMetricFamily(
            "mailgate_messages_finished", "Messages sent or failed (bounced).", labels=["state"]
        )
        for state in _FINISHED:
            finished.add_metric([state.value], float(counts.get(state.value, 0)))
        yield finished
        depth = GaugeMetricFamily("mailgate_queue_depth", "Messages by state.", labels=["state"])
        for state in State:
            depth.add_metric([state.value], float(counts.get(state.value, 0)))
        yield depth
        oldest = self.queue.oldest_active()
        age = GaugeMetricFamily(
            "mailgate_queue_oldest_age_seconds", "Age of the oldest message not yet finished."
        )
        age.add_metric([], max(0.0, self.clock() - oldest) if oldest else 0.0)
        yield age

    def _recipients(self) -> Iterator[Metric]:
        rows = self.queue.recipient_counts()
        family = CounterMetricFamily(
            "mailgate_recipients",
            "Recipients by outcome (pending, sent, failed).",
            labels=["state"],
        )
        for state, count in rows:
            family.add_metric([str(state)], float(count))
        yield family

    def _events(self) -> Iterator[Metric]:
        # Delivery records each upstream refusal and deferral as an event with its kind.
        rows = self.queue.event_counts()
        family = CounterMetricFamily(
            "mailgate_events", "Gateway events by kind and level.", labels=["kind", "level"]
        )
        for kind, level, count in rows:
            family.add_metric([str(kind), str(level)], float(count))
        yield family

    def _token(self) -> Iterator[Metric]:
        account = self.store.account()
        signed_in = GaugeMetricFamily("mailgate_signed_in", "1 when an account is signed in.")
        signed_in.add_metric([], 1.0 if account is not None else 0.0)
        yield signed_in
        if account is not None:
            refresh = GaugeMetricFamily(
                "mailgate_token_last_refresh_timestamp_seconds",
                "When the refresh token was last used.",
            )
            refresh.add_metric([], account.last_refresh_at)
            yield refresh
            error = GaugeMetricFamily(
                "mailgate_token_last_error", "1 when the last token refresh failed."
            )
            error.add_metric([], 1.0 if account.last_error else 0.0)
            yield error


def metrics_text(queue: QueueStore, store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue, store))
    return bytes(generate_latest(registry))
