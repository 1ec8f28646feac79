-- Every statement on voice_messages: the API's, the dispatcher's, FastAGI's.

-- name: create^
-- Inserts the message only if the account has the files it names (the
-- message's and the prompt's, each optional: text is spoken instead), and
-- returns it as voice_message_view shows it (a new row is 'queued' and due
-- now), so the API answers from this one statement; no row when a file is
-- missing or the sender is not the account's (unless :any_sender):
-- `phone_numbers.owns` and `sound_files.get` tell which. The files are read
-- FOR SHARE: a concurrent DELETE of one waits for us, then sees this message
-- and refuses.
WITH file AS (
    SELECT name FROM sound_files
    WHERE account_id = :account_id AND name IN (:file_name, :prompt_file)
    FOR SHARE
), ins AS (
    INSERT INTO voice_messages (account_id, from_number, to_number, file_name, retries,
                                retry_interval, text, speech_stem, language, acknowledge,
                                prompt_file, prompt_text, prompt_stem, confirm_stem,
                                repeat_total, repeat_interval, due_at)
    SELECT :account_id, :from_number, :to_number, :file_name, :retries, :retry_interval,
           :text, :speech_stem, :language, :acknowledge, :prompt_file, :prompt_text,
           :prompt_stem, :confirm_stem, :repeat_total, :repeat_interval, now()
    WHERE (:file_name::text IS NULL OR EXISTS (SELECT 1 FROM file WHERE name = :file_name))
      AND (:prompt_file::text IS NULL
           OR EXISTS (SELECT 1 FROM file WHERE name = :prompt_file))
      AND (:any_sender OR EXISTS (
        SELECT 1 FROM phone_numbers
        WHERE number = :from_number AND account_id = :account_id))
    RETURNING *
)
SELECT ins.*, 'queued'::text AS status, ins.due_at AS next_attempt_at,
       NULL::float8 AS duration
FROM ins;

-- name: get^
SELECT * FROM voice_message_view WHERE id = :id AND account_id = :account_id;

-- name: list_page
SELECT * FROM voice_message_view
WHERE account_id = :account_id AND id < :before_id
ORDER BY id DESC
LIMIT :limit;

-- name: cancel^
-- Cancels the message. With no call in flight it is final at once; a call in
-- flight is hung up by its dispatcher (woken by NOTIFY amivono_cancel).
UPDATE voice_messages
SET canceled_at = now(), updated_at = now(),
    due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END,
    finished_at = CASE WHEN lease_attempt_id IS NULL THEN now() ELSE finished_at END,
    outcome = CASE WHEN lease_attempt_id IS NULL THEN 'canceled' ELSE outcome END
WHERE id = :id AND account_id = :account_id
  AND finished_at IS NULL AND canceled_at IS NULL AND acknowledged_at IS NULL
RETURNING id, lease_attempt_id;

-- name: needs_file$
-- Whether a message not yet finished still needs this file (to play, as
-- its prompt, or as the call an SMS not yet ended may escalate to).
SELECT EXISTS (SELECT 1 FROM voice_messages
               WHERE account_id = :account_id AND :file_name IN (file_name, prompt_file)
                 AND finished_at IS NULL)
    OR EXISTS (SELECT 1 FROM sms_messages
               WHERE account_id = :account_id AND escalate->>'file' = :file_name
                 AND escalated_to IS NULL AND NOT halted AND due_at IS NOT NULL);

-- name: serialize_claims$
-- Taken (for the transaction) before claim_due_calls: the node caps count
-- calls in flight, and two claims counting at once could both fill it.
SELECT pg_advisory_xact_lock(495606196332);  -- "sacll": any constant shared by all

-- name: claim_due_calls
-- Like claim_due_sends for SMS, and capped per gateway node: at most its cap
-- (:caps, in the order of :gateways, the nodes this dispatcher can reach)
-- calls in flight on each node across all dispatchers (run after
-- serialize_claims, in its transaction, so the counts see every other
-- claim). Each claimed call is given a node: the free slots of all nodes are
-- taken in order of the fill they would bring, (in flight + k) / cap, so a
-- node with twice the cap gets twice the calls and none goes over its cap.
-- Attempts made before gateways existed count for :fallback.
-- The calls in flight are counted once per claim (MATERIALIZED): inlined,
-- the count ran again for every free slot (a claim with 300 free slots and
-- 100 calls in flight read 40,000 buffers and cost 250 ms).
WITH live AS MATERIALIZED (
    -- Live leases only: a dead dispatcher's calls stop counting when their
    -- leases run out, and this very claim then closes their attempts.
    SELECT coalesce(a.gateway, :fallback) AS name, count(*) AS calls
    FROM voice_messages m JOIN voice_attempts a ON a.id = m.lease_attempt_id
    WHERE m.lease_attempt_id IS NOT NULL AND m.due_at > now()
    GROUP BY 1
),
nodes AS MATERIALIZED (
    SELECT g.name, g.cap,
           g.cap - coalesce((SELECT live.calls FROM live WHERE live.name = g.name), 0) AS free
    FROM unnest(:gateways::text[], :caps::int[]) AS g(name, cap)
),
slots AS (
    SELECT nodes.name, row_number() OVER (
        ORDER BY (nodes.cap - nodes.free + k)::float8 / nodes.cap, nodes.name) AS slot
    -- No node needs more than :limit slots: a claim takes at most that many.
    FROM nodes, generate_series(1, least(greatest(nodes.free, 0), :limit)) AS k
),
capacity AS (
    SELECT least(:limit, (SELECT count(*) FROM slots)) AS n
),
due AS (
    SELECT id, account_id, file_name, speech_stem, lease_attempt_id, canceled_at,
           acknowledged_at, due_at
    FROM voice_messages
    WHERE due_at <= now()
    ORDER BY due_at
    LIMIT (SELECT n FROM capacity)
    FOR UPDATE SKIP LOCKED
),
numbered AS (
    SELECT due.*, row_number() OVER (ORDER BY due.due_at, due.id) AS slot FROM due
),
abandoned AS (
    -- An acknowledged call was answered and heard its 1: that is its outcome.
    UPDATE voice_attempts a
    SET finished_at = clock_timestamp(),
        outcome = CASE WHEN a.acknowledged_at IS NULL THEN 'unknown' ELSE 'acknowledged' END,
        detail = CASE WHEN a.acknowledged_at IS NULL
                      THEN 'lease expired before the dispatcher finished: the call may '
                           'have been placed'
                      ELSE 'answered; acknowledged (the dispatcher did not finish the call)'
                 END
    FROM due
    WHERE a.id = due.lease_attempt_id AND a.finished_at IS NULL
    RETURNING a.id, a.message_id, a.acknowledged_at, a.answered_at
),
attempts AS (
    -- No call after a cancel or an acknowledgement (one that a dispatcher
    -- which died after the key left open): the message ends instead.
    INSERT INTO voice_attempts (message_id, dispatcher, gateway)
    SELECT numbered.id, :dispatcher, slots.name
    FROM numbered JOIN slots ON slots.slot = numbered.slot
    WHERE numbered.canceled_at IS NULL AND numbered.acknowledged_at IS NULL
    RETURNING id, message_id, gateway
)
UPDATE voice_messages m
SET lease_attempt_id = attempts.id,
    due_at = CASE WHEN attempts.id IS NULL THEN NULL
                  ELSE now() + make_interval(secs => :lease_seconds) END,
    finished_at = CASE WHEN attempts.id IS NULL THEN now() ELSE m.finished_at END,
    outcome = CASE WHEN attempts.id IS NOT NULL THEN m.outcome
                   WHEN due.acknowledged_at IS NOT NULL THEN 'acknowledged'
                   ELSE 'canceled' END,
    -- The abandoned call counts when it was acknowledged: it was answered.
    attempts_made = m.attempts_made + (ab.acknowledged_at IS NOT NULL)::int,
    calls_made = m.calls_made + (ab.acknowledged_at IS NOT NULL)::int,
    updated_at = now()
FROM due
LEFT JOIN attempts ON attempts.message_id = due.id
LEFT JOIN abandoned ab ON ab.message_id = due.id
LEFT JOIN sound_files f ON f.account_id = due.account_id AND f.name = due.file_name
LEFT JOIN speech_renders s ON s.stem = due.speech_stem
WHERE m.id = due.id
RETURNING m.id, m.account_id, m.from_number, m.to_number, m.file_name,
          attempts.id AS attempt_id, attempts.gateway, coalesce(f.stem, s.stem) AS stem,
          coalesce(f.duration_ms, s.duration_ms) AS duration_ms, m.speech_stem,
          m.acknowledge, m.prompt_file, m.prompt_stem, m.confirm_stem;

-- name: mark_calls!
-- When calls were answered ('answered') and their files began to play
-- ('playing'), on the attempts and their messages, for one call or for the
-- marks that came while the dispatcher's previous write of marks was in
-- flight: one commit, one WAL flush for all of them. A call's marks come in
-- separate statements, in order.
WITH k AS (
    SELECT * FROM unnest(:attempt_ids::bigint[], :marks::text[]) AS k(attempt_id, mark)
),
a AS (
    UPDATE voice_attempts v
    SET answered_at = CASE WHEN k.mark = 'answered' THEN clock_timestamp()
                           ELSE v.answered_at END,
        playback_started_at = CASE WHEN k.mark = 'playing' THEN clock_timestamp()
                                   ELSE v.playback_started_at END
    FROM k
    WHERE v.id = k.attempt_id AND v.finished_at IS NULL
      AND CASE k.mark WHEN 'answered' THEN v.answered_at IS NULL
                      WHEN 'playing' THEN v.playback_started_at IS NULL END
    RETURNING v.message_id, k.mark, v.answered_at, v.playback_started_at
)
UPDATE voice_messages m
SET answered_at = CASE WHEN a.mark = 'answered' THEN a.answered_at ELSE m.answered_at END,
    sent_at = CASE WHEN a.mark = 'playing' THEN a.playback_started_at ELSE m.sent_at END,
    updated_at = now()
FROM a WHERE m.id = a.message_id;

-- name: finish_calls!
-- Records how the call ended, then either schedules the next call or makes
-- the message final. The next call: a retry (when retryable and retries are
-- left), or, for acknowledge: true, the next of `repeat_total` calls
-- (whatever this one's outcome) until one is acknowledged; a call that was
-- never placed (placed false: our Asterisk refused the originate, e.g. while
-- it restarts) does not count, and is tried again at the same interval, a few
-- times at most. Nothing after a cancel or an acknowledgement.
-- For one call, or for the outcomes that came while the dispatcher's previous
-- write of outcomes was in flight: one commit for all of them, each call's
-- decision made as alone.
WITH o AS (
    SELECT * FROM unnest(:attempt_ids::bigint[], :outcomes::text[], :cause_codes::integer[],
                         :cause_texts::text[], :details::text[], :retryables::boolean[],
                         :placeds::boolean[])
        AS o(attempt_id, outcome, cause_code, cause_text, detail, retryable, placed)
),
finished AS (
    UPDATE voice_attempts a
    SET finished_at = clock_timestamp(), outcome = o.outcome, cause_code = o.cause_code,
        cause_text = o.cause_text, detail = o.detail
    FROM o
    WHERE a.id = o.attempt_id AND a.finished_at IS NULL
    RETURNING a.id, a.message_id, a.outcome, a.answered_at, a.finished_at, o.cause_code,
              o.cause_text, o.retryable, o.placed
),
n AS (
    SELECT f.*, CASE
               WHEN m.canceled_at IS NOT NULL OR m.acknowledged_at IS NOT NULL
                    OR f.outcome = 'acknowledged' THEN NULL
               WHEN f.retryable AND m.attempts_made < m.retries
                   THEN m.retry_interval
               WHEN m.acknowledge AND m.calls_made + f.placed::int < m.repeat_total
                    AND (f.placed OR (f.retryable AND m.attempts_made - m.calls_made < 5))
                   THEN coalesce(m.repeat_interval, m.retry_interval)
           END AS next_in_minutes
    FROM finished f JOIN voice_messages m ON m.id = f.message_id
    FOR UPDATE OF m
)
UPDATE voice_messages m
SET attempts_made = m.attempts_made + 1,
    calls_made = m.calls_made + n.placed::int,
    outcome = CASE WHEN m.acknowledged_at IS NOT NULL OR n.outcome = 'acknowledged'
                   THEN 'acknowledged'
                   WHEN m.canceled_at IS NOT NULL AND n.outcome <> 'completed'
                   THEN 'canceled' ELSE n.outcome END,
    cause_code = n.cause_code,
    cause_text = n.cause_text,
    ended_at = CASE WHEN n.answered_at IS NOT NULL THEN n.finished_at ELSE m.ended_at END,
    lease_attempt_id = NULL,
    due_at = CASE WHEN n.next_in_minutes IS NOT NULL
                  THEN now() + make_interval(secs => n.next_in_minutes * :minute_seconds)
             END,
    finished_at = CASE WHEN n.next_in_minutes IS NOT NULL THEN NULL ELSE now() END,
    updated_at = now()
FROM n
WHERE m.id = n.message_id AND m.lease_attempt_id = n.id;

-- name: record_key!
-- A key the callee pressed (ChannelDtmfReceived), kept on the attempt in order.
WITH a AS (
    UPDATE voice_attempts SET keys = keys || :key
    WHERE id = :attempt_id AND finished_at IS NULL
    RETURNING message_id
)
UPDATE voice_messages m SET last_key = :key, updated_at = now()
FROM a WHERE m.id = a.message_id;

-- name: mark_prompting!
WITH a AS (
    UPDATE voice_attempts SET prompt_started_at = clock_timestamp()
    WHERE id = :attempt_id AND finished_at IS NULL AND prompt_started_at IS NULL
    RETURNING message_id
)
UPDATE voice_messages m SET updated_at = now() FROM a WHERE m.id = a.message_id;

-- name: acknowledge^
-- The callee pressed 1: no more calls (finish_call sees it), and an SMS this
-- call escalated ends (trigger voice_messages_end_escalated_sms). No row when
-- the message was canceled before the key came.
WITH a AS (
    UPDATE voice_attempts SET acknowledged_at = clock_timestamp()
    WHERE id = :attempt_id AND finished_at IS NULL AND acknowledged_at IS NULL
    RETURNING message_id, acknowledged_at
)
UPDATE voice_messages m SET acknowledged_at = a.acknowledged_at, updated_at = now()
FROM a
WHERE m.id = a.message_id AND m.acknowledged_at IS NULL AND m.canceled_at IS NULL
RETURNING m.id, m.acknowledged_at;

-- name: canceled_among$
-- Which of these in-flight attempts belong to messages canceled meanwhile.
SELECT coalesce(array_agg(lease_attempt_id), '{}') FROM voice_messages
WHERE lease_attempt_id = ANY(:attempt_ids) AND canceled_at IS NOT NULL;

-- name: seconds_until_due$
SELECT extract(epoch FROM min(due_at) - now())::float8
FROM voice_messages WHERE due_at IS NOT NULL;

-- name: latest_sent_to^
-- The voice message most recently played to this number, for inbound replay.
-- `media`: under the sounds folder, the account's file or the rendered speech.
SELECT m.id, m.account_id, coalesce(m.file_name, 'text') AS file_name,
       coalesce(m.account_id || '/' || f.stem, 'speech/' || m.speech_stem) AS media
FROM voice_messages m
LEFT JOIN sound_files f ON f.account_id = m.account_id AND f.name = m.file_name
WHERE m.to_number = :number AND m.sent_at IS NOT NULL
  AND (f.stem IS NOT NULL OR m.speech_stem IS NOT NULL)
ORDER BY m.id DESC
LIMIT 1;

-- name: mark_heard!
UPDATE voice_messages SET heard_at = now(), updated_at = now() WHERE id = :id;

-- name: admin_list
SELECT v.*, a.name AS account
FROM voice_message_view v JOIN accounts a ON a.id = v.account_id
WHERE (:account::text IS NULL OR a.name = :account)
ORDER BY v.id DESC
LIMIT :limit;

-- name: admin_get^
SELECT v.*, a.name AS account
FROM voice_message_view v JOIN accounts a ON a.id = v.account_id
WHERE v.id = :id;

-- name: expire_own_leases!
-- As sms_messages.expire_own_leases: calls this dispatcher's previous run left open.
UPDATE voice_messages m SET due_at = now()
FROM voice_attempts a
WHERE a.id = m.lease_attempt_id AND a.finished_at IS NULL AND a.dispatcher = :dispatcher
  AND m.due_at > now();

-- name: not_placed!
-- The call was never placed (ARI unreachable, or Asterisk answered the
-- originate with an error before making the channel): the attempt is closed
-- as 'failed' with why, but not counted in attempts_made, and the message is
-- due again after :wait_seconds, as an SMS waits while ARI is down. A cancel
-- committed meanwhile makes it final. A refusal by a live Asterisk
-- (:refused, a 5xx: its trouble may last, e.g. a wrong trunk name) is waited
-- out only :refusals times in a row (no placed call between them): that one
-- ends the message `failed` with the refusal as its cause.
WITH closed AS (
    UPDATE voice_attempts
    SET finished_at = clock_timestamp(), outcome = 'failed',
        detail = CASE WHEN :refused::boolean THEN 'not placed, Asterisk refused: '
                      ELSE 'not placed: ' END || :detail::text
    WHERE id = :attempt_id AND finished_at IS NULL
    RETURNING id, message_id
),
n AS (
    -- Refusals before this one, since the last attempt that was not a refusal
    -- (a placed call; a request that never reached Asterisk counts neither way).
    SELECT c.id, c.message_id, :refused::boolean AND (
        SELECT count(*) FROM voice_attempts r
        WHERE r.message_id = c.message_id AND r.id < c.id
          AND r.detail LIKE 'not placed, Asterisk refused: %'
          AND r.id > coalesce((SELECT max(p.id) FROM voice_attempts p
                               WHERE p.message_id = c.message_id AND p.id < c.id
                                 AND (p.detail IS NULL OR p.detail NOT LIKE 'not placed%')),
                              0)) + 1 >= :refusals::int AS give_up
    FROM closed c
)
UPDATE voice_messages m
SET lease_attempt_id = NULL,
    due_at = CASE WHEN m.canceled_at IS NULL AND NOT n.give_up
                  THEN now() + make_interval(secs => :wait_seconds) END,
    finished_at = CASE WHEN m.canceled_at IS NULL AND NOT n.give_up THEN NULL ELSE now() END,
    outcome = CASE WHEN m.canceled_at IS NOT NULL THEN 'canceled'
                   WHEN n.give_up THEN 'failed' ELSE m.outcome END,
    cause_code = CASE WHEN n.give_up THEN NULL ELSE m.cause_code END,
    cause_text = CASE WHEN n.give_up THEN (:refusals::int)::text
                                          || ' originates refused in a row: ' || :detail::text
                      ELSE m.cause_text END,
    updated_at = now()
FROM n
WHERE m.id = n.message_id AND m.lease_attempt_id = n.id;
