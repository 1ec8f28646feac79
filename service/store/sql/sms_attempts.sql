-- name: list_for_message
SELECT id, send_number, dispatcher, transport, started_at, finished_at, outcome, detail
FROM sms_attempts
WHERE message_id = :message_id
ORDER BY id;
