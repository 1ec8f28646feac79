-- name: reserve_key^
-- Takes the key for this request. A key older than 24 hours, or one whose
-- first request died before finishing (nothing was created then: the
-- creation and the stored response commit together), is taken afresh.
-- Returns no row while another live request holds the key; else created_at,
-- which identifies this reservation (a later takeover gets another).
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
RETURNING created_at;

-- name: get_key^
SELECT request_hash, response_status, response_body, response_location
FROM idempotency_keys
WHERE account_id = :account_id AND key = :key;

-- name: store_response^
-- Only into our own reservation: no row if a later request took the key over.
UPDATE idempotency_keys
SET response_status = :status, response_body = :body, response_location = :location
WHERE account_id = :account_id AND key = :key AND created_at = :reserved_at
RETURNING key;

-- name: release_key!
-- The request failed before creating anything: free the key for a retry.
DELETE FROM idempotency_keys
WHERE account_id = :account_id AND key = :key AND created_at = :reserved_at
  AND response_status IS NULL;

-- name: purge_expired!
DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours';

-- name: store_responses
-- store_response (status 201) for many reservations in one statement.
UPDATE idempotency_keys k
SET response_status = 201, response_body = s.body::jsonb, response_location = s.location
FROM unnest(:account_ids::bigint[], :keys::text[], :reserved_ats::timestamptz[],
            :bodies::text[], :locations::text[]) AS s (account_id, key, reserved_at, body,
                                                     location)
WHERE k.account_id = s.account_id AND k.key = s.key AND k.created_at = s.reserved_at
RETURNING k.key;
