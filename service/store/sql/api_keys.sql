-- name: create_key^
INSERT INTO api_keys (account_id, key_hash, prefix)
VALUES (:account_id, :key_hash, :prefix)
RETURNING id;

-- name: list_keys
SELECT k.id, a.name AS account, k.prefix, k.created_at, k.revoked_at,
       a.rate_limit_per_hour, a.sms_transport, a.allowed_countries
FROM api_keys k JOIN accounts a ON a.id = k.account_id
ORDER BY k.id;

-- name: revoke_key^
UPDATE api_keys SET revoked_at = now()
WHERE id = :id AND revoked_at IS NULL
RETURNING id;

-- name: active_key_hashes
-- What the failed-authentication throttle lets through a throttled address.
SELECT key_hash FROM api_keys WHERE revoked_at IS NULL;
