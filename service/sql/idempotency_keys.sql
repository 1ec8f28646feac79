-- name: reserve_key^
-- Takes the key for this request. A key older than 24 hours, or one whose
-- first request died before finishing (nothing was created then: the
-- creation and the stored response commit together), is taken afresh.
-- Returns no row while another live request holds the key.
INSERT INTO idempotency_keys AS k (account_id, key, request_hash)
VALUES (:account_id, :key, :request_hash)
ON CONFLICT (account_id, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash,
    created_at = now(),
    response_status = NULL,
    response_body = NULL,
    response_location = NULL
WHERE k.created_at < now() - interval '24 hours'
   OR (k.response_status IS NULL AND k.created_at < now() - interval '2 minutes')
RETURNING key;

-- name: get_key^
SELECT request_hash, response_status, response_body, response_location
FROM idempotency_keys
WHERE account_id = :account_id AND key = :key;

-- name: store_response!
UPDATE idempotency_keys
SET response_status = :status, response_body = :body, response_location = :location
WHERE account_id = :account_id AND key = :key;

-- name: release_key!
-- The request failed before creating anything: free the key for a retry.
DELETE FROM idempotency_keys
WHERE account_id = :account_id AND key = :key AND response_status IS NULL;

-- name: purge_expired!
DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours';
