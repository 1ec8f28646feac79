-- Every statement on sms_messages: the API's, the link's and the queue's.

-- name: create^
-- Returns the new row as sms_message_view shows it: a row just inserted is
-- 'queued' and due now (by the view's definition), so the API answers from
-- this one statement. No row when the sender is not the account's own
-- (unless :any_sender) or the phone opted out of the account's SMS (unless
-- :ignore_opt_out, for the opt-out's own confirmation); `phone_numbers.owns` tells which.
WITH ins AS (
    INSERT INTO sms_messages (account_id, from_number, to_number, text, body, encoding,
                              segments, repeat_total, repeat_interval, link_token,
                              stop_on_reply, opt_out_exempt, escalate, due_at)
    SELECT :account_id, :from_number, :to_number, :text, :body, :encoding,
           :segments, :repeat_total, :repeat_interval, :link_token, :stop_on_reply,
           :ignore_opt_out, :escalate::jsonb, now()
    WHERE (:any_sender OR EXISTS (
               SELECT 1 FROM phone_numbers
               WHERE number = :from_number AND account_id = :account_id))
      AND (:ignore_opt_out OR NOT EXISTS (
               SELECT 1 FROM opt_outs WHERE account_id = :account_id AND phone = :to_number))
    RETURNING *
)
SELECT ins.*, 'queued'::text AS status, ins.due_at AS next_send_at FROM ins;

-- name: create_many
-- `create` for many messages in one statement (concurrent API requests
-- stored together: sms_messages.create_batched). Each row says which of the
-- arrays' places (:places) it was made for; a place with no row was refused
-- as `create` refuses (sender not the account's, or the phone opted out).
WITH wanted AS (
    SELECT nextval(pg_get_serial_sequence('sms_messages', 'id')) AS id, w.*
    FROM unnest(:places::int[], :account_ids::bigint[], :from_numbers::text[],
                :to_numbers::text[], :texts::text[], :bodies::text[], :encodings::text[],
                :segments::int[], :repeat_totals::int[], :repeat_intervals::int[],
                :link_tokens::text[], :stop_on_replies::bool[], :any_senders::bool[])
         AS w (place, account_id, from_number, to_number, text, body, encoding, segments,
               repeat_total, repeat_interval, link_token, stop_on_reply, any_sender)
    WHERE (w.any_sender OR EXISTS (
               SELECT 1 FROM phone_numbers
               WHERE number = w.from_number AND account_id = w.account_id))
      AND NOT EXISTS (
               SELECT 1 FROM opt_outs WHERE account_id = w.account_id AND phone = w.to_number)
),
ins AS (
    INSERT INTO sms_messages (id, account_id, from_number, to_number, text, body, encoding,
                              segments, repeat_total, repeat_interval, link_token,
                              stop_on_reply, opt_out_exempt, escalate, due_at)
    OVERRIDING SYSTEM VALUE
    SELECT id, account_id, from_number, to_number, text, body, encoding, segments,
           repeat_total, repeat_interval, link_token, stop_on_reply, false, NULL, now()
    FROM wanted
    RETURNING *
)
SELECT ins.*, 'queued'::text AS status, ins.due_at AS next_send_at, wanted.place
FROM ins JOIN wanted USING (id);

-- name: get^
SELECT * FROM sms_message_view WHERE id = :id AND account_id = :account_id;

-- name: list_page
-- Newest first; keyset pagination on id (stable while new messages arrive).
SELECT * FROM sms_message_view
WHERE account_id = :account_id AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: cancel^
-- Cancels the sends still to come. A send in flight finishes; its lease keeps
-- due_at so a dead dispatcher's attempt is still closed by the next claim.
-- An SMS sent for the last time can still be canceled while its escalation
-- call is not finished: that cancels the call (sms_messages_end_escalation).
UPDATE sms_messages m
SET canceled_at = now(), updated_at = now(),
    due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END
WHERE id = :id AND account_id = :account_id AND NOT halted
  AND (sent_count < repeat_total
       OR (escalated_to IS NOT NULL AND EXISTS (
               SELECT 1 FROM voice_messages v
               WHERE v.id = m.escalated_to AND v.finished_at IS NULL)))
RETURNING id;

-- name: record_click^
-- The first click stops the sends still to come; later clicks change nothing.
UPDATE sms_messages
SET clicked_at = coalesce(clicked_at, now()),
    updated_at = CASE WHEN clicked_at IS NULL THEN now() ELSE updated_at END,
    due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END
WHERE link_token = :token
RETURNING id, clicked_at;

-- name: link_exists$
SELECT 1 FROM sms_messages WHERE link_token = :token;

-- name: claim_due_sends
-- Takes up to :limit due sends for one dispatcher in one statement. Rows
-- locked by another dispatcher's claim are skipped, never waited for. A row
-- whose previous lease ran out closes that attempt as 'unknown' (the SMS may
-- have gone out) before it is sent again. Rows stopped meanwhile (canceled,
-- clicked, replied, opted out) just leave the queue: they come back with attempt_id NULL.
WITH due AS (
    -- Only messages whose transport (the account's, or :transport) is up on
    -- this dispatcher (:ready): the others wait instead of failing.
    SELECT m.id, m.account_id, m.lease_attempt_id, m.sent_count, m.repeat_total, m.halted,
           coalesce(a.sms_transport, :transport) AS transport,
           -- Checked again here: a POST racing the phone's STOP may have been
           -- stored after the STOP looked for pending sends.
           NOT m.opt_out_exempt AND EXISTS (
               SELECT 1 FROM opt_outs o
               WHERE o.account_id = m.account_id AND o.phone = m.to_number) AS opted_out
    FROM sms_messages m JOIN accounts a ON a.id = m.account_id
    WHERE m.due_at <= now() AND coalesce(a.sms_transport, :transport) = ANY(:ready::text[])
    ORDER BY m.due_at
    LIMIT :limit
    FOR UPDATE OF m SKIP LOCKED
),
abandoned AS (
    UPDATE sms_attempts a
    SET finished_at = clock_timestamp(), outcome = 'unknown',
        detail = 'lease expired before the dispatcher finished: the SMS may have been sent'
    FROM due
    WHERE a.id = due.lease_attempt_id AND a.finished_at IS NULL
    RETURNING a.id
),
attempts AS (
    -- The account's own transport if it chose one, else the dispatcher's default.
    INSERT INTO sms_attempts (message_id, send_number, dispatcher, transport)
    SELECT due.id, due.sent_count + 1, :dispatcher, due.transport
    FROM due
    WHERE NOT due.halted AND NOT due.opted_out AND due.sent_count < due.repeat_total
    RETURNING id, message_id, send_number, transport
)
UPDATE sms_messages m
SET lease_attempt_id = attempts.id,
    due_at = CASE WHEN attempts.id IS NULL THEN NULL
                  ELSE now() + make_interval(secs => :lease_seconds) END,
    opted_out_at = CASE WHEN due.opted_out AND NOT due.halted AND attempts.id IS NULL
                        THEN now() ELSE m.opted_out_at END,
    updated_at = now()
FROM due LEFT JOIN attempts ON attempts.message_id = due.id
WHERE m.id = due.id
RETURNING m.id, m.account_id, m.from_number, m.to_number, m.body,
          attempts.id AS attempt_id, attempts.send_number, attempts.transport;

-- name: lock_for_attempt$
-- Taken first, in the same transaction, by finish_send and record_report:
-- each then runs with a snapshot that holds the other's work, so a report
-- that comes while its send is being recorded is never missed by both.
SELECT m.id FROM sms_messages m JOIN sms_attempts a ON a.message_id = m.id
WHERE a.id = :attempt_id
FOR UPDATE OF m;

-- name: lock_for_attempts
-- lock_for_attempt for many attempts at once (finish_sends, record_reports),
-- in the order of the messages' ids so two such batches never deadlock.
SELECT m.id FROM sms_messages m JOIN sms_attempts a ON a.message_id = m.id
WHERE a.id = ANY(:attempt_ids::bigint[])
ORDER BY m.id
FOR UPDATE OF m;

-- name: finish_sends
-- Records the outcomes of attempts (one, or those that came while the
-- dispatcher's previous write was in flight) and schedules what comes next
-- for each: the next repeat after repeat_interval (minutes of :minute_seconds
-- each), a retry with backoff after a failure, or nothing. A dispatcher whose
-- lease was taken over only closes its attempt: the message belongs to the
-- new holder. A send the carrier already reported undelivered (the report
-- came first) counts as failed, as record_report would have made it.
WITH outcomes AS (
    SELECT * FROM unnest(:attempt_ids::bigint[], :outcomes::text[], :details::text[],
                         :gateways::text[]) AS o(attempt_id, outcome, detail, gateway)
),
finished AS (
    UPDATE sms_attempts a
    SET finished_at = clock_timestamp(), outcome = o.outcome, detail = o.detail,
        gateway = o.gateway
    FROM outcomes o
    WHERE a.id = o.attempt_id AND a.finished_at IS NULL
    RETURNING a.id, a.message_id, a.outcome
),
f AS (
    SELECT finished.id, finished.message_id, finished.outcome,
           finished.outcome = 'sent' AND NOT EXISTS (
               SELECT 1 FROM sms_delivery_reports r
               WHERE r.attempt_id = finished.id AND NOT r.delivered) AS ok
    FROM finished
)
UPDATE sms_messages m
SET sent_count = m.sent_count + f.ok::int,
    last_sent_at = CASE WHEN f.outcome = 'sent' THEN now() ELSE m.last_sent_at END,
    failures = CASE WHEN f.ok THEN 0 ELSE m.failures + 1 END,
    failed_at = CASE WHEN NOT f.ok AND m.failures + 1 >= :max_failures
                     THEN now() ELSE m.failed_at END,
    lease_attempt_id = NULL,
    due_at = CASE
        WHEN m.halted THEN NULL
        WHEN f.ok AND m.sent_count + 1 >= m.repeat_total THEN NULL
        WHEN f.ok
            THEN now() + make_interval(secs => m.repeat_interval * :minute_seconds)
        WHEN m.failures + 1 >= :max_failures THEN NULL
        ELSE now() + make_interval(secs => least(300, :retry_seconds * power(2, m.failures)))
    END,
    updated_at = now()
FROM f
WHERE m.id = f.message_id AND m.lease_attempt_id = f.id
RETURNING m.id, m.due_at;

-- name: record_report^
-- The carrier's receipt for an attempt, kept once however often it comes. A
-- delivered send counts in delivered_count; an undelivered one is retried
-- like a failed send: if its attempt is already finished as sent, the send
-- is uncounted and due again after the backoff (unless another send of the
-- message is in flight, whose finish_send then schedules from the corrected
-- count); if the attempt is still open, finish_send sees the report. No row
-- for a duplicate or for a reference that names no attempt.
WITH attempt AS (
    SELECT a.id, a.message_id, a.outcome FROM sms_attempts a WHERE a.id = :attempt_id
),
ins AS (
    INSERT INTO sms_delivery_reports (attempt_id, delivered, stat, error, receipt)
    SELECT attempt.id, :delivered, :stat, :error, :receipt FROM attempt
    ON CONFLICT (attempt_id) DO NOTHING
    RETURNING attempt_id, delivered
),
r AS (
    SELECT ins.attempt_id, ins.delivered, attempt.message_id,
           NOT ins.delivered AND attempt.outcome IS NOT DISTINCT FROM 'sent' AS uncount
    FROM ins JOIN attempt ON attempt.id = ins.attempt_id
)
UPDATE sms_messages m
SET delivered_count = m.delivered_count + r.delivered::int,
    delivered_at = CASE WHEN r.delivered THEN now() ELSE m.delivered_at END,
    sent_count = m.sent_count - (r.uncount AND NOT m.halted)::int,
    failures = m.failures + (r.uncount AND NOT m.halted)::int,
    failed_at = CASE WHEN r.uncount AND NOT m.halted AND m.failures + 1 >= :max_failures
                     THEN now() ELSE m.failed_at END,
    due_at = CASE
        WHEN NOT r.uncount OR m.halted OR m.lease_attempt_id IS NOT NULL THEN m.due_at
        WHEN m.failures + 1 >= :max_failures THEN NULL
        ELSE now() + make_interval(secs => least(300, :retry_seconds * power(2, m.failures)))
    END,
    updated_at = now()
FROM r
WHERE m.id = r.message_id
RETURNING m.id, m.account_id, r.attempt_id, r.delivered, m.due_at;

-- name: seconds_until_due$
-- How long the dispatcher may sleep: until the next due send or lease expiry.
SELECT extract(epoch FROM min(due_at) - now())::float8
FROM sms_messages WHERE due_at IS NOT NULL;

-- name: admin_list
-- For the operator's CLI: newest first, every account or one.
SELECT v.*, a.name AS account
FROM sms_message_view v JOIN accounts a ON a.id = v.account_id
WHERE (:account::text IS NULL OR a.name = :account)
ORDER BY v.id DESC
LIMIT :limit;

-- name: admin_get^
SELECT v.*, a.name AS account
FROM sms_message_view v JOIN accounts a ON a.id = v.account_id
WHERE v.id = :id;

-- name: expire_own_leases!
-- At a dispatcher's start: the sends its name still leases were left open by
-- its previous run (killed, or its outcome write lost). Their leases end now,
-- so the next claim closes those attempts as 'unknown' at once instead of
-- after the lease. Dispatcher names are unique among running dispatchers.
UPDATE sms_messages m SET due_at = now()
FROM sms_attempts a
WHERE a.id = m.lease_attempt_id AND a.finished_at IS NULL AND a.dispatcher = :dispatcher
  AND m.due_at > now();

-- name: unsettled_open
-- Of :attempt_ids, those whose send's outcome is not recorded yet while their
-- lease runs (past it, the next claim closes them `unknown` and sends again).
SELECT a.id
FROM sms_attempts a JOIN sms_messages m ON m.lease_attempt_id = a.id
WHERE a.id = ANY(:attempt_ids) AND a.finished_at IS NULL AND m.due_at > now();

-- name: resend_unsettled
-- Sends handed to a gateway node (Asterisk answered 202) a moment before
-- the node was lost, with no carrier report yet: Asterisk may have died
-- before the SIP MESSAGE left, so each attempt becomes `unknown` and its
-- message is due again now (a send in flight, or a message stopped
-- meanwhile, keeps its own schedule), counted like an undelivered report.
WITH doubtful AS (
    UPDATE sms_attempts a
    SET outcome = 'unknown', detail = :detail
    WHERE a.id = ANY(:attempt_ids) AND a.outcome = 'sent'
      AND NOT EXISTS (SELECT 1 FROM sms_delivery_reports r WHERE r.attempt_id = a.id)
    RETURNING a.id, a.message_id
)
UPDATE sms_messages m
SET sent_count = m.sent_count - (NOT m.halted)::int,
    due_at = CASE WHEN m.halted OR m.lease_attempt_id IS NOT NULL THEN m.due_at ELSE now() END,
    updated_at = now()
FROM doubtful d
WHERE m.id = d.message_id
RETURNING m.id, d.id AS attempt_id;
