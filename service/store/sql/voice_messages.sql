-- Every statement on voice_messages: the API's, the dispatcher's, FastAGI's.

-- name: create^
-- Inserts the message only if the account has the file, and returns it as
-- voice_message_view shows it (a new row is 'queued' and due now), so the API
-- answers from this one statement; no row when there is no such file or the
-- sender is not the account's (unless :any_sender): `phone_numbers.owns` tells which. The
-- file is read FOR SHARE: a concurrent DELETE of it waits for us, then sees
-- this message and refuses.
WITH file AS (
    SELECT name FROM sound_files
    WHERE account_id = :account_id AND name = :file_name
    FOR SHARE
), ins AS (
    INSERT INTO voice_messages (account_id, from_number, to_number, file_name, retries,
                                retry_interval, due_at)
    SELECT :account_id, :from_number, :to_number, file.name, :retries, :retry_interval, now()
    FROM file
    WHERE :any_sender OR EXISTS (
        SELECT 1 FROM phone_numbers
        WHERE number = :from_number AND account_id = :account_id)
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
  AND finished_at IS NULL AND canceled_at IS NULL
RETURNING id, lease_attempt_id;

-- name: needs_file$
-- Whether a message not yet finished still needs this file.
SELECT EXISTS (SELECT 1 FROM voice_messages
               WHERE account_id = :account_id AND file_name = :file_name
                 AND finished_at IS NULL);

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
WITH nodes AS (
    -- Live leases only: a dead dispatcher's calls stop counting when their
    -- leases run out, and this very claim then closes their attempts.
    SELECT g.name, g.cap, g.cap - (
        SELECT count(*) FROM voice_messages m JOIN voice_attempts a ON a.id = m.lease_attempt_id
        WHERE m.lease_attempt_id IS NOT NULL AND m.due_at > now()
          AND coalesce(a.gateway, :fallback) = g.name) AS free
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
    SELECT id, account_id, file_name, lease_attempt_id, canceled_at, due_at
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
    UPDATE voice_attempts a
    SET finished_at = clock_timestamp(), outcome = 'unknown',
        detail = 'lease expired before the dispatcher finished: the call may have been placed'
    FROM due
    WHERE a.id = due.lease_attempt_id AND a.finished_at IS NULL
    RETURNING a.id
),
attempts AS (
    INSERT INTO voice_attempts (message_id, dispatcher, gateway)
    SELECT numbered.id, :dispatcher, slots.name
    FROM numbered JOIN slots ON slots.slot = numbered.slot
    WHERE numbered.canceled_at IS NULL
    RETURNING id, message_id, gateway
)
UPDATE voice_messages m
SET lease_attempt_id = attempts.id,
    due_at = CASE WHEN attempts.id IS NULL THEN NULL
                  ELSE now() + make_interval(secs => :lease_seconds) END,
    finished_at = CASE WHEN attempts.id IS NULL THEN now() ELSE m.finished_at END,
    outcome = CASE WHEN attempts.id IS NULL THEN 'canceled' ELSE m.outcome END,
    updated_at = now()
FROM due
LEFT JOIN attempts ON attempts.message_id = due.id
LEFT JOIN sound_files f ON f.account_id = due.account_id AND f.name = due.file_name
WHERE m.id = due.id
RETURNING m.id, m.account_id, m.from_number, m.to_number, m.file_name,
          attempts.id AS attempt_id, attempts.gateway, f.stem, f.duration_ms;

-- name: mark_answered!
WITH a AS (
    UPDATE voice_attempts SET answered_at = clock_timestamp()
    WHERE id = :attempt_id AND finished_at IS NULL AND answered_at IS NULL
    RETURNING message_id, answered_at
)
UPDATE voice_messages m SET answered_at = a.answered_at, updated_at = now()
FROM a WHERE m.id = a.message_id;

-- name: mark_playing!
WITH a AS (
    UPDATE voice_attempts SET playback_started_at = clock_timestamp()
    WHERE id = :attempt_id AND finished_at IS NULL AND playback_started_at IS NULL
    RETURNING message_id, playback_started_at
)
UPDATE voice_messages m SET sent_at = a.playback_started_at, updated_at = now()
FROM a WHERE m.id = a.message_id;

-- name: finish_call^
-- Records how the call ended, then either schedules a retry (when
-- :retryable and retries are left) or makes the message final.
WITH finished AS (
    UPDATE voice_attempts
    SET finished_at = clock_timestamp(), outcome = :outcome, cause_code = :cause_code,
        cause_text = :cause_text, detail = :detail
    WHERE id = :attempt_id AND finished_at IS NULL
    RETURNING id, message_id, outcome, answered_at, finished_at
),
next AS (
    SELECT f.* FROM finished f
)
-- `m` here is the row as locked by this UPDATE (a cancel committed meanwhile
-- is seen), so the retry decision and the outcome use it, not the snapshot.
UPDATE voice_messages m
SET attempts_made = m.attempts_made + 1,
    outcome = CASE WHEN m.canceled_at IS NOT NULL AND n.outcome <> 'completed'
                   THEN 'canceled' ELSE n.outcome END,
    cause_code = :cause_code,
    cause_text = :cause_text,
    ended_at = CASE WHEN n.answered_at IS NOT NULL THEN n.finished_at ELSE m.ended_at END,
    lease_attempt_id = NULL,
    due_at = CASE WHEN m.canceled_at IS NULL AND :retryable AND m.attempts_made < m.retries
                  THEN now() + make_interval(secs => m.retry_interval * :minute_seconds)
             END,
    finished_at = CASE WHEN m.canceled_at IS NULL AND :retryable
                            AND m.attempts_made < m.retries
                       THEN NULL ELSE now() END,
    updated_at = now()
FROM next n
WHERE m.id = n.message_id AND m.lease_attempt_id = n.id
RETURNING m.id;

-- name: canceled_among$
-- Which of these in-flight attempts belong to messages canceled meanwhile.
SELECT coalesce(array_agg(lease_attempt_id), '{}') FROM voice_messages
WHERE lease_attempt_id = ANY(:attempt_ids) AND canceled_at IS NOT NULL;

-- name: seconds_until_due$
SELECT extract(epoch FROM min(due_at) - now())::float8
FROM voice_messages WHERE due_at IS NOT NULL;

-- name: latest_sent_to^
-- The voice message most recently played to this number, for inbound replay.
SELECT m.id, m.account_id, m.file_name, f.stem
FROM voice_messages m
JOIN sound_files f ON f.account_id = m.account_id AND f.name = m.file_name
WHERE m.to_number = :number AND m.sent_at IS NOT NULL
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
