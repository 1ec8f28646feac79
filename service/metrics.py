"""Prometheus metrics of one process (API, dispatcher, or both in `amivono run`).

Counters and histograms live in the process that sees the event; the queue's
depth is read from PostgreSQL when /metrics is scraped, so any process shows
the whole queue.
"""

from __future__ import annotations

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from service.store.queries import queries

ACCEPTED = Counter("amivono_messages_accepted_total",
                   "Messages accepted by the API (201, replays not counted)", ["kind"])
SENDS = Counter("amivono_sends_total", "Finished send attempts by outcome",
                ["kind", "outcome"])
CLAIM_TO_SEND = Histogram(
    "amivono_claim_to_send_seconds",
    "From the claim to the hand-off to Asterisk (SMS: sent; voice: call placed)",
    ["kind"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
CALLS_IN_FLIGHT = Gauge("amivono_calls_in_flight", "Voice calls this dispatcher is handling")
ARI_RECONNECTS = Counter("amivono_ari_reconnects_total",
                         "ARI event WebSocket connections after the first")
INBOUND = Counter("amivono_inbound_sms_total", "Inbound SMS stored, by kind and routing",
                  ["kind", "routed"])
REPORTS = Counter("amivono_delivery_reports_total",
                  "Carrier delivery reports by result (delivered, undelivered, duplicate, "
                  "unmatched, malformed)", ["result"])
WEBHOOK_DELIVERIES = Counter("amivono_webhook_deliveries_total",
                             "Webhook delivery attempts by outcome (succeeded, retrying, "
                             "failed)", ["outcome"])
WEBHOOK_PENDING = Gauge("amivono_webhook_pending", "Webhook deliveries not yet made")
WEBHOOK_OLDEST = Gauge("amivono_webhook_oldest_pending_seconds",
                       "Age of the oldest webhook delivery not yet made")
QUEUE = Gauge("amivono_queue_depth", "Work in the queue (whole database)", ["kind", "state"])
IN_FLIGHT_ATTEMPTS = Gauge("amivono_attempts_in_flight",
                           "Attempts started and not finished (all dispatchers)", ["kind"])

# Per gateway node (label `gateway`: its name in `amivono gateways list`).
GATEWAY_CONNECTED = Gauge("amivono_gateway_connected",
                          "1 while this dispatcher's ARI events connection to the node is up",
                          ["gateway"])
GATEWAY_SENDS = Counter("amivono_gateway_sends_total",
                        "Finished send attempts per gateway node, by kind and outcome",
                        ["gateway", "kind", "outcome"])
GATEWAY_CALLS_IN_FLIGHT = Gauge("amivono_gateway_calls_in_flight",
                                "Voice calls this dispatcher has in flight on the node",
                                ["gateway"])
GATEWAY_REROUTES = Counter("amivono_gateway_reroutes_total",
                           "SMS not handed over by a node and sent through another",
                           ["gateway"])


async def refresh_queue(pool: asyncpg.Pool) -> None:
    for row in await queries.metrics.queue_depth(pool):
        QUEUE.labels(row["kind"], row["state"]).set(row["count"])
        if row["state"] == "in_flight":
            IN_FLIGHT_ATTEMPTS.labels(row["kind"]).set(row["count"])
    webhooks = await queries.webhook_deliveries.pending_stats(pool)
    WEBHOOK_PENDING.set(webhooks["pending"])
    WEBHOOK_OLDEST.set(webhooks["oldest_seconds"])


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
