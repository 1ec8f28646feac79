-- The carrier's delivery reports (written by sms_messages.record_report).

-- name: recorded
-- Which of these attempts already have their report: the inbox replay
-- writes only the others (one read for a chunk instead of a locking write
-- per report).
SELECT attempt_id FROM sms_delivery_reports WHERE attempt_id = ANY(:attempt_ids::bigint[]);
