-- The webhook outbox: one row per event per endpoint (written by the triggers
-- of migrations/005_webhooks.sql), taken by the delivery workers.

-- name: claim_due
-- Up to :limit due deliveries, skipping rows another worker holds and the
-- endpoints this worker already has enough in flight for (:busy). The lease
-- is next_attempt_at: a worker that dies leaves the row due again.
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.next_attempt_at <= clock_timestamp() AND d.status = 'pending'
      AND d.endpoint_id <> ALL (:busy::bigint[])
    ORDER BY d.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET next_attempt_at = clock_timestamp() + make_interval(secs => :lease_seconds),
    attempts = d.attempts + 1, updated_at = now()
FROM due, webhook_endpoints e
WHERE d.id = due.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.account_id, d.event_type, d.subject_kind, d.subject_id,
          d.data, d.body, d.webhook_id, d.event_at, d.attempts, e.url, e.secret, e.enabled;

-- name: fix_body$
-- The body of the first attempt, kept for every retry; returns the kept one.
UPDATE webhook_deliveries SET body = coalesce(body, :body)
WHERE id = :id
RETURNING body;

-- name: record^
-- The outcome of one attempt: done, or due again after :retry_in seconds,
-- or failed for good when :retry_in is NULL. Only the latest attempt writes:
-- a worker whose lease ran out and was taken over (attempts moved on) does not.
UPDATE webhook_deliveries
SET status = CASE WHEN :ok THEN 'succeeded'
                  WHEN :retry_in::float8 IS NULL THEN 'failed' ELSE 'pending' END,
    next_attempt_at = CASE WHEN :ok OR :retry_in::float8 IS NULL THEN NULL
                           ELSE clock_timestamp() + make_interval(secs => :retry_in) END,
    last_attempt_at = clock_timestamp(), last_status_code = :status_code,
    last_error = :error, last_latency_ms = :latency_ms, updated_at = now()
WHERE id = :id AND attempts = :attempts
RETURNING status;

-- name: seconds_until_due$
SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8
FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL;

-- name: list_for_endpoint
SELECT * FROM webhook_deliveries
WHERE endpoint_id = :endpoint_id AND account_id = :account_id AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: retry^
-- Sends a finished one (succeeded or failed) again, at once, under the same
-- webhook-id. A pending one is left to its schedule (it may be in flight):
-- no row, as for another account's.
UPDATE webhook_deliveries
SET status = 'pending', next_attempt_at = clock_timestamp(), updated_at = now()
WHERE id = :id AND endpoint_id = :endpoint_id AND account_id = :account_id
  AND status <> 'pending'
RETURNING *;

-- name: exists$
SELECT EXISTS (SELECT 1 FROM webhook_deliveries
               WHERE id = :id AND endpoint_id = :endpoint_id AND account_id = :account_id);

-- name: create_test^
INSERT INTO webhook_deliveries (endpoint_id, account_id, event_type, data, webhook_id)
VALUES (:endpoint_id, :account_id, 'webhook.test', :data,
        'msg_' || replace(gen_random_uuid()::text, '-', ''))
RETURNING *;

-- name: admin_list
SELECT d.id, d.endpoint_id, a.name AS account, d.event_type, d.webhook_id, d.status,
       d.attempts, d.last_status_code, d.last_error, d.last_latency_ms,
       d.next_attempt_at, d.event_at
FROM webhook_deliveries d JOIN accounts a ON a.id = d.account_id
WHERE (:account::text IS NULL OR a.name = :account)
  AND (:endpoint_id::bigint IS NULL OR d.endpoint_id = :endpoint_id)
ORDER BY d.id DESC
LIMIT :limit;

-- name: pending_stats^
-- For /metrics: deliveries waiting, and how old the oldest is.
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM clock_timestamp() - min(event_at)), 0)::float8
           AS oldest_seconds
FROM webhook_deliveries WHERE status = 'pending';
