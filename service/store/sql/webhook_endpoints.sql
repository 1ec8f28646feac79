-- Webhook endpoints, per account.

-- name: create^
INSERT INTO webhook_endpoints (account_id, url, description, events, secret)
VALUES (:account_id, :url, :description, :events, :secret)
RETURNING *;

-- name: get^
SELECT * FROM webhook_endpoints WHERE id = :id AND account_id = :account_id;

-- name: list_for_account
SELECT * FROM webhook_endpoints WHERE account_id = :account_id ORDER BY id;

-- name: update^
-- NULL leaves a field as it is. Enabling again clears the failure record.
UPDATE webhook_endpoints
SET url = coalesce(:url, url),
    description = coalesce(:description, description),
    events = coalesce(:events, events),
    enabled = coalesce(:enabled, enabled),
    disabled_reason = CASE WHEN coalesce(:enabled, enabled) THEN NULL
                           ELSE coalesce(disabled_reason, 'disabled by the client') END,
    failing_since = CASE WHEN :enabled::boolean THEN NULL ELSE failing_since END,
    updated_at = now()
WHERE id = :id AND account_id = :account_id
RETURNING *;

-- name: delete^
DELETE FROM webhook_endpoints WHERE id = :id AND account_id = :account_id RETURNING id;

-- name: succeeded!
UPDATE webhook_endpoints SET failing_since = NULL WHERE id = :id AND failing_since IS NOT NULL;

-- name: failed^
-- An endpoint that has failed everything for :disable_after seconds is disabled.
UPDATE webhook_endpoints
SET failing_since = coalesce(failing_since, now()),
    enabled = enabled AND coalesce(failing_since, now())
                          > now() - make_interval(secs => :disable_after),
    disabled_reason = CASE
        WHEN enabled AND coalesce(failing_since, now())
                         <= now() - make_interval(secs => :disable_after)
        THEN 'every delivery failed for ' || (:disable_after)::bigint || ' s'
        ELSE disabled_reason END,
    updated_at = now()
WHERE id = :id
RETURNING enabled, disabled_reason;

-- name: admin_list
SELECT e.*, a.name AS account
FROM webhook_endpoints e JOIN accounts a ON a.id = e.account_id
WHERE (:account::text IS NULL OR a.name = :account)
ORDER BY e.id;
