-- SMS the trunk delivered to us.

-- name: insert^
-- Stores the message once: no row when this SIP request (Call-ID and CSeq)
-- was stored before. Routed to the account that owns the number it was sent
-- to, or to nobody.
INSERT INTO inbound_messages (account_id, from_number, to_number, body, kind, sip_key)
SELECT (SELECT account_id FROM phone_numbers WHERE number = :to_number),
       :from_number, :to_number, :body, :kind, :sip_key
ON CONFLICT (sip_key) DO NOTHING
RETURNING *;

-- name: stop_replied
-- A reply from :phone to :number ends the repeats of that account's SMS from
-- :number to :phone that still have sends to come (those sent with
-- stop_on_reply). A send in flight finishes; its lease keeps due_at.
-- `due_at IS NOT NULL` holds for every message with sends to come (even in
-- flight: the lease's end); it lets sms_messages_pending_to serve this.
-- An SMS sent for the last time whose escalation call is not finished is
-- matched too: the reply ends that call (sms_messages_end_escalation).
UPDATE sms_messages m
SET replied_at = now(), reply_id = :inbound_id, updated_at = now(),
    due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END
WHERE account_id = :account_id AND from_number = :number AND to_number = :phone
  AND stop_on_reply AND NOT halted
  AND ((due_at IS NOT NULL AND sent_count < repeat_total)
       OR (escalated_to IS NOT NULL AND EXISTS (
               SELECT 1 FROM voice_messages v
               WHERE v.id = m.escalated_to AND v.finished_at IS NULL)))
RETURNING id;

-- name: stop_opted_out
-- STOP from :phone ends every send still to come to it from the account, and
-- every escalation call of its SMS not finished yet (sms_messages_end_escalation).
UPDATE sms_messages m
SET opted_out_at = now(), updated_at = now(),
    due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END
WHERE account_id = :account_id AND to_number = :phone AND NOT halted
  AND ((due_at IS NOT NULL AND sent_count < repeat_total)
       OR (escalated_to IS NOT NULL AND EXISTS (
               SELECT 1 FROM voice_messages v
               WHERE v.id = m.escalated_to AND v.finished_at IS NULL)))
RETURNING id;

-- name: set_affected!
UPDATE inbound_messages SET affected_ids = :ids WHERE id = :id;

-- name: get^
SELECT * FROM inbound_messages WHERE id = :id AND account_id = :account_id;

-- name: list_page
SELECT * FROM inbound_messages
WHERE account_id = :account_id AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: admin_list
-- For the operator: every account's, one account's, or the unrouted ones.
SELECT i.*, a.name AS account
FROM inbound_messages i LEFT JOIN accounts a ON a.id = i.account_id
WHERE (NOT :unrouted OR i.account_id IS NULL)
  AND (:account::text IS NULL OR a.name = :account)
ORDER BY i.id DESC
LIMIT :limit;
