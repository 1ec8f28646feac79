-- name: list_for_message
-- With the carrier's report, when one came (the attempt row itself is final
-- once finished: reports live in sms_delivery_reports).
SELECT a.id, a.send_number, a.dispatcher, a.transport, a.gateway, a.started_at, a.finished_at,
       a.outcome, a.detail, r.delivered, r.stat AS report_stat, r.error AS report_error,
       r.received_at AS reported_at
FROM sms_attempts a LEFT JOIN sms_delivery_reports r ON r.attempt_id = a.id
WHERE a.message_id = :message_id
ORDER BY a.id;
