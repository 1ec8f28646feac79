-- name: queue_depth
-- Due now, scheduled for later, and in flight (leased), for both queues. The
-- partial indexes on due_at keep this cheap however long the history.
SELECT 'sms' AS kind, 'due' AS state, count(*) AS count
FROM sms_messages WHERE due_at <= now() AND lease_attempt_id IS NULL
UNION ALL
SELECT 'sms', 'scheduled', count(*)
FROM sms_messages WHERE due_at > now() AND lease_attempt_id IS NULL
UNION ALL
SELECT 'sms', 'in_flight', count(*)
FROM sms_messages WHERE due_at IS NOT NULL AND lease_attempt_id IS NOT NULL
UNION ALL
SELECT 'voice', 'due', count(*)
FROM voice_messages WHERE due_at <= now() AND lease_attempt_id IS NULL
UNION ALL
SELECT 'voice', 'scheduled', count(*)
FROM voice_messages WHERE due_at > now() AND lease_attempt_id IS NULL
UNION ALL
SELECT 'voice', 'in_flight', count(*)
FROM voice_messages WHERE due_at IS NOT NULL AND lease_attempt_id IS NOT NULL;
