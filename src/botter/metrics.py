"""Every Prometheus metric botter exports, as module-level objects in the default registry.

Names carry the `botter_` prefix and base units; label values come from short fixed sets
(never an id, a path with ids in it, or anything a client chose freely).
"""

from prometheus_client import Counter, Gauge, Histogram

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

# Work in PostgreSQL, sampled by the worker's leader (the same numbers for every instance).
INBOX_PENDING = Gauge(
    "botter_inbox_pending",
    "Updates recorded but not yet processed.",
)
INBOX_OLDEST_AGE_SECONDS = Gauge(
    "botter_inbox_oldest_age_seconds",
    "Age of the oldest update waiting to be processed (0 when none waits).",
)
INBOX_DEAD = Gauge(
    "botter_inbox_dead",
    "Updates that failed every attempt and wait for an operator.",
)
JOBS_QUEUED = Gauge(
    "botter_jobs_queued",
    "Jobs queued, by priority queue (urgent: payments and answers; normal: the rest).",
    ["queue"],
)
JOBS_OLDEST_AGE_SECONDS = Gauge(
    "botter_jobs_oldest_age_seconds",
    "How long the oldest due job has been due, by priority queue.",
    ["queue"],
)
JOBS_DEAD = Gauge(
    "botter_jobs_dead",
    "Jobs that failed every attempt or could never succeed.",
)
PAYMENTS_WITHOUT_GRANT = Gauge(
    "botter_payments_without_grant",
    "Completed payments older than a minute whose order gave no access: must stay 0.",
)

# What workers did.
UPDATES_PROCESSED = Counter(
    "botter_updates_processed_total",
    "Updates taken from the inbox, by outcome (done, retry, dead).",
    ["outcome"],
)
UPDATE_LAG_SECONDS = Histogram(
    "botter_update_lag_seconds",
    "Time from an update being recorded to its processing being committed.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOBS_FINISHED = Counter(
    "botter_jobs_finished_total",
    "Jobs run, by kind and outcome (done, retry, later, dead).",
    ["kind", "outcome"],
)
PAYMENTS = Counter(
    "botter_payments_total",
    "Payments recorded in the ledger, by status (completed, mismatch) and refunds.",
    ["status"],
)
REVENUE_STARS = Counter(
    "botter_revenue_stars_total",
    "Stars received in completed payments (refunds not subtracted).",
)
ACCESS_CHANGES = Counter(
    "botter_access_changes_total",
    "Access granted, revoked (removals) and reminders sent.",
    ["change"],
)
TELEGRAM_RETRY_AFTER_SECONDS = Counter(
    "botter_telegram_retry_after_seconds_total",
    "Seconds Telegram asked botter to wait in 429 answers.",
)
TELEGRAM_BREAKERS_OPEN = Gauge(
    "botter_telegram_breakers_open",
    "Bots whose circuit breaker is not closed, as seen in Redis.",
)

# Resources of this process.
DB_POOL_CONNECTIONS = Gauge(
    "botter_db_pool_connections",
    "The web process's PostgreSQL pool, by state (in_use, idle, waiting).",
    ["state"],
)
REDIS_USED_MEMORY_BYTES = Gauge(
    "botter_redis_used_memory_bytes",
    "Memory Redis reports in use (INFO memory).",
)

# Bots as Telegram sees them, sampled by the bot health monitor.
BOT_WEBHOOK_PENDING_UPDATES_MAX = Gauge(
    "botter_bot_webhook_pending_updates_max",
    "The largest pending_update_count among bots' webhooks (getWebhookInfo).",
)
BOT_WEBHOOK_ERROR_AGE_SECONDS_MIN = Gauge(
    "botter_bot_webhook_last_error_age_seconds_min",
    "Seconds since the most recent webhook delivery error of any bot (large when none).",
)
BOTS_UNAUTHORIZED = Gauge(
    "botter_bots_unauthorized",
    "Bots whose token Telegram rejects (revoked by the creator).",
)
