-- Voice until acknowledged: text-to-speech, "press 1 to confirm", repeated
-- calls until someone does, and SMS that escalate to such a call.

-- Speech rendered from text, once per (engine version, language, text): the
-- stem is that hash; the files are <sounds_dir>/speech/<stem>.{ulaw,alaw,wav16}.
CREATE TABLE speech_renders (
    stem        text PRIMARY KEY CHECK (stem ~ '^[a-f0-9]{32}$'),
    language    text NOT NULL,
    engine      text NOT NULL,
    duration_ms integer NOT NULL CHECK (duration_ms > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

DROP VIEW voice_message_view;

ALTER TABLE voice_messages
    ALTER COLUMN file_name DROP NOT NULL,
    ADD COLUMN text            text,      -- spoken instead of a file
    ADD COLUMN speech_stem     text REFERENCES speech_renders (stem),
    ADD COLUMN language        text,
    ADD COLUMN acknowledge     boolean NOT NULL DEFAULT false,
    ADD COLUMN prompt_file     text,      -- acknowledge_prompt as an uploaded file
    ADD COLUMN prompt_text     text,      -- acknowledge_prompt as text (or null: built in)
    ADD COLUMN prompt_stem     text REFERENCES speech_renders (stem),
    ADD COLUMN confirm_stem    text REFERENCES speech_renders (stem),
    -- Calls in all (busy and no-answer count), repeat_interval minutes apart,
    -- until one is acknowledged.
    ADD COLUMN repeat_total    integer NOT NULL DEFAULT 1 CHECK (repeat_total BETWEEN 1 AND 20),
    ADD COLUMN repeat_interval integer CHECK (repeat_interval >= 1),
    -- Calls really placed (busy and no-answer count; an originate our own
    -- Asterisk refused does not): `repeat_total` counts these.
    ADD COLUMN calls_made      integer NOT NULL DEFAULT 0,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN last_key        text,      -- the latest key pressed in any call
    ADD COLUMN escalated_from  bigint REFERENCES sms_messages (id),
    ADD CONSTRAINT voice_messages_plays_one CHECK ((file_name IS NULL) <> (text IS NULL)),
    ADD CONSTRAINT voice_messages_text_spoken CHECK ((text IS NULL) = (speech_stem IS NULL)),
    ADD CONSTRAINT voice_messages_acknowledged CHECK (acknowledge OR acknowledged_at IS NULL),
    DROP CONSTRAINT voice_messages_outcome_check;
ALTER TABLE voice_messages
    ADD CONSTRAINT voice_messages_outcome_check
    CHECK (outcome IN ('completed', 'busy', 'no-answer', 'rejected', 'failed', 'canceled',
                       'acknowledged'));

ALTER TABLE voice_attempts
    ADD COLUMN prompt_started_at timestamptz,
    ADD COLUMN keys            text NOT NULL DEFAULT '',  -- every key pressed, in order
    ADD COLUMN acknowledged_at timestamptz,
    DROP CONSTRAINT voice_attempts_outcome_check;
ALTER TABLE voice_attempts
    ADD CONSTRAINT voice_attempts_outcome_check
    CHECK (outcome IN ('completed', 'busy', 'no-answer', 'rejected', 'failed', 'canceled',
                       'acknowledged', 'unknown'));

CREATE VIEW voice_message_view AS
SELECT m.*,
       CASE
           WHEN m.finished_at IS NOT NULL THEN m.outcome
           -- Shown at once, while the confirmation still plays.
           WHEN m.acknowledged_at IS NOT NULL THEN 'acknowledged'
           WHEN m.canceled_at IS NOT NULL THEN 'canceled'
           WHEN m.lease_attempt_id IS NOT NULL THEN 'calling'
           WHEN m.attempts_made = 0 THEN 'queued'
           ELSE 'scheduled'
       END AS status,
       CASE WHEN m.lease_attempt_id IS NULL THEN m.due_at END AS next_attempt_at,
       extract(epoch FROM m.ended_at - m.answered_at)::float8 AS duration
FROM voice_messages m;

DROP VIEW sms_message_view;

ALTER TABLE sms_messages
    -- {after, file, text, language, speech_stem, prompt_stem, confirm_stem,
    -- wait_seconds}: the voice message to create after `after` sends.
    ADD COLUMN escalate        jsonb,
    ADD COLUMN escalated_to    bigint REFERENCES voice_messages (id),
    ADD COLUMN acknowledged_at timestamptz,  -- its escalation call was acknowledged
    DROP COLUMN halted;
ALTER TABLE sms_messages
    ADD COLUMN halted boolean GENERATED ALWAYS AS (
        canceled_at IS NOT NULL OR clicked_at IS NOT NULL OR failed_at IS NOT NULL
        OR replied_at IS NOT NULL OR opted_out_at IS NOT NULL
        OR acknowledged_at IS NOT NULL) STORED;

CREATE VIEW sms_message_view AS
SELECT m.*,
       CASE
           WHEN m.canceled_at IS NOT NULL THEN 'canceled'
           WHEN m.clicked_at IS NOT NULL THEN 'clicked'
           WHEN m.replied_at IS NOT NULL THEN 'replied'
           WHEN m.acknowledged_at IS NOT NULL THEN 'acknowledged'
           WHEN m.opted_out_at IS NOT NULL THEN 'opted_out'
           WHEN m.failed_at IS NOT NULL THEN 'failed'
           WHEN m.sent_count >= m.repeat_total THEN 'completed'
           WHEN m.lease_attempt_id IS NOT NULL THEN 'sending'
           WHEN m.sent_count = 0 THEN 'queued'
           ELSE 'scheduled'
       END AS status,
       CASE WHEN m.lease_attempt_id IS NULL THEN m.due_at END AS next_send_at
FROM sms_messages m;

-- The escalation: when the SMS has been sent `after` times and is not halted
-- (no click, no reply), the voice message is created, due `wait_seconds`
-- later (one repeat_interval: time to click the last send), and linked both ways.
CREATE FUNCTION sms_messages_escalate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    e jsonb := NEW.escalate;
    voice_id bigint;
BEGIN
    INSERT INTO voice_messages (account_id, from_number, to_number, file_name, text,
                                speech_stem, language, acknowledge, prompt_stem,
                                confirm_stem, escalated_from, due_at)
    VALUES (NEW.account_id, NEW.from_number, NEW.to_number, e->>'file', e->>'text',
            e->>'speech_stem', e->>'language', true, e->>'prompt_stem', e->>'confirm_stem',
            NEW.id, now() + make_interval(secs => coalesce((e->>'wait_seconds')::float8, 0)))
    RETURNING id INTO voice_id;
    UPDATE sms_messages SET escalated_to = voice_id, updated_at = now() WHERE id = NEW.id;
    PERFORM pg_notify('amivono_due', '');
    RETURN NULL;
END $$;
CREATE TRIGGER sms_messages_escalate AFTER UPDATE OF sent_count ON sms_messages
    FOR EACH ROW WHEN (NEW.escalate IS NOT NULL AND NEW.escalated_to IS NULL
                       AND NOT NEW.halted
                       AND OLD.sent_count < (NEW.escalate->>'after')::int
                       AND NEW.sent_count >= (NEW.escalate->>'after')::int)
    EXECUTE FUNCTION sms_messages_escalate();

-- A click, a reply or a cancel of the SMS ends its escalation call too: a
-- queued one at once, one in progress is hung up by its dispatcher (NOTIFY).
CREATE FUNCTION sms_messages_end_escalation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    in_flight bigint;
BEGIN
    UPDATE voice_messages
    SET canceled_at = now(), updated_at = now(),
        cause_text = 'the SMS it escalated was ' || CASE
            WHEN NEW.clicked_at IS NOT NULL THEN 'clicked'
            WHEN NEW.replied_at IS NOT NULL THEN 'replied to' ELSE 'canceled' END,
        due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END,
        finished_at = CASE WHEN lease_attempt_id IS NULL THEN now() ELSE finished_at END,
        outcome = CASE WHEN lease_attempt_id IS NULL THEN 'canceled' ELSE outcome END
    WHERE id = NEW.escalated_to AND finished_at IS NULL AND canceled_at IS NULL
      AND acknowledged_at IS NULL
    RETURNING lease_attempt_id INTO in_flight;
    IF in_flight IS NOT NULL THEN
        PERFORM pg_notify('amivono_cancel', in_flight::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sms_messages_end_escalation AFTER UPDATE ON sms_messages
    FOR EACH ROW WHEN (NEW.escalated_to IS NOT NULL AND (
        (OLD.clicked_at IS NULL AND NEW.clicked_at IS NOT NULL)
        OR (OLD.replied_at IS NULL AND NEW.replied_at IS NOT NULL)
        OR (OLD.canceled_at IS NULL AND NEW.canceled_at IS NOT NULL)))
    EXECUTE FUNCTION sms_messages_end_escalation();

-- An acknowledged escalation call ends the SMS it came from.
CREATE FUNCTION voice_messages_end_escalated_sms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sms_messages
    SET acknowledged_at = NEW.acknowledged_at, updated_at = now(),
        due_at = CASE WHEN lease_attempt_id IS NULL THEN NULL ELSE due_at END
    WHERE id = NEW.escalated_from AND NOT halted;
    RETURN NULL;
END $$;
CREATE TRIGGER voice_messages_end_escalated_sms AFTER UPDATE ON voice_messages
    FOR EACH ROW WHEN (NEW.escalated_from IS NOT NULL AND OLD.acknowledged_at IS NULL
                       AND NEW.acknowledged_at IS NOT NULL)
    EXECUTE FUNCTION voice_messages_end_escalated_sms();

-- voice.acknowledged for an acknowledged message (005 sent voice.failed).
CREATE OR REPLACE FUNCTION voice_messages_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id,
                             CASE NEW.outcome WHEN 'completed' THEN 'voice.completed'
                                              WHEN 'canceled' THEN 'voice.canceled'
                                              WHEN 'acknowledged' THEN 'voice.acknowledged'
                                              ELSE 'voice.failed' END,
                             'voice', NEW.id);
    END IF;
    RETURN NULL;
END $$;
