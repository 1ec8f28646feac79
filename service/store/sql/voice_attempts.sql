-- name: list_for_message
SELECT id, dispatcher, gateway, started_at, answered_at, playback_started_at, finished_at,
       outcome, cause_code, cause_text, detail, prompt_started_at, keys, acknowledged_at
FROM voice_attempts
WHERE message_id = :message_id
ORDER BY id;
