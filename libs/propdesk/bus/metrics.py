"""Prometheus metrics of the event bus, in the process-wide default registry (/metrics).

Labels stay bounded: the outbox's schema for the relay, the durable consumer's name for a
consumer; never a tenant or an event id. The relay and each consumer runner take their
label children once, so the hot path is one `inc()` per event.

The backlog gauges are this process's relay's view of its schema's outbox: set to zero
when a claim drains the outbox, otherwise refreshed by one cheap query at most every few
seconds (`Relay.backlog_interval`). With several relay replicas, take the max over them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RELAY_PUBLISHED = Counter(
    "propdesk_bus_relay_published",
    "Outbox events the relay published to JetStream (acknowledged by the stream).",
    ["schema"],
)
RELAY_PUBLISH_FAILURES = Counter(
    "propdesk_bus_relay_publish_failures",
    "Outbox rows whose publish failed (left unpublished, tried again on a later claim).",
    ["schema"],
)
OUTBOX_BACKLOG = Gauge(
    "propdesk_bus_outbox_backlog",
    "Unpublished outbox rows as the relay last saw them (counted up to 100000).",
    ["schema"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "propdesk_bus_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row as the relay last saw it (0: none).",
    ["schema"],
)
DEAD_LETTERS_OPEN = Gauge(
    "propdesk_bus_dead_letters_open",
    "Dead letters of the schema not yet replayed, as the relay last counted them.",
    ["schema"],
)

CONSUMER_HANDLED = Counter(
    "propdesk_bus_consumer_handled",
    "Events a consumer applied (new to its inbox, committed).",
    ["consumer"],
)
CONSUMER_EVENT_AGE = Histogram(
    "propdesk_bus_consumer_event_age_seconds",
    "How old an event was when a consumer had applied it (committed): from the producer's"
    " occurred_at, so it includes the outbox, the relay, JetStream and the consumer's queue.",
    ["consumer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)
CONSUMER_DUPLICATES = Counter(
    "propdesk_bus_consumer_duplicates",
    "Events a consumer skipped because its inbox had them already.",
    ["consumer"],
)
CONSUMER_REDELIVERIES = Counter(
    "propdesk_bus_consumer_redeliveries",
    "Messages a consumer received again (JetStream num_delivered > 1).",
    ["consumer"],
)
CONSUMER_DEAD_LETTERED = Counter(
    "propdesk_bus_consumer_dead_lettered",
    "Messages recorded in dead_letters (committed) and terminated.",
    ["consumer"],
)
CONSUMER_DEAD_LETTER_FAILURES = Counter(
    "propdesk_bus_consumer_dead_letter_failures",
    "Dead letters that could not be written; the message was nak'ed and comes back.",
    ["consumer"],
)
CONSUMER_UNPARSEABLE = Counter(
    "propdesk_bus_consumer_unparseable",
    "Messages received whose envelope could not be parsed, or that came on a subject"
    " other than the envelope's own (dead-lettered unapplied).",
    ["consumer"],
)
