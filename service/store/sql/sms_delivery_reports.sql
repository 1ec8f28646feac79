-- The carrier's delivery reports (written by sms_messages.record_report).

-- name: reported
-- Of these attempt ids, those that name an attempt, and whether it has its
-- report already: the inbox replay writes only the unreported ones (one
-- read for a chunk instead of a locking write per report; a reference that
-- names no attempt would change nothing).
SELECT a.id AS attempt_id, r.attempt_id IS NOT NULL AS reported
FROM sms_attempts a LEFT JOIN sms_delivery_reports r ON r.attempt_id = a.id
WHERE a.id = ANY(:attempt_ids::bigint[]);
