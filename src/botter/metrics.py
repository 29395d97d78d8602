"""Every Prometheus metric botter exports, as module-level objects in the default registry.

Names carry the `botter_` prefix and base units; label values come from short fixed sets
(never an id, a path with ids in it, or anything a client chose freely).
"""

from prometheus_client import Counter, Histogram

# outcome: stored | duplicate | rejected (bad secret or body) | failed (not recorded, 503)
UPDATES_RECEIVED = Counter(
    "botter_updates_received_total",
    "Telegram updates that reached the webhook, by outcome.",
    ["outcome"],
)

INGEST_BATCH_SIZE = Histogram(
    "botter_ingest_batch_size",
    "Updates written to the inbox by one group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

INGEST_BATCH_DURATION_SECONDS = Histogram(
    "botter_ingest_batch_duration_seconds",
    "Time from a batch's INSERT being sent to its commit being confirmed.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

INGEST_BATCHES_FAILED = Counter(
    "botter_ingest_batches_failed_total",
    "Group commits that failed; every update in them was answered 503.",
)

HTTP_REQUEST_DURATION_SECONDS = Histogram(
    "botter_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# to: open | closed (a half-open breaker that succeeded enough)
TELEGRAM_BREAKER_TRANSITIONS = Counter(
    "botter_telegram_breaker_transitions_total",
    "Circuit breaker state changes of bots' Bot API calls, by the state entered.",
    ["state"],
)

# outcome: ok | the error class name (a short fixed set)
TELEGRAM_CALLS = Counter(
    "botter_telegram_calls_total",
    "Bot API calls made, by method and outcome.",
    ["method", "outcome"],
)
