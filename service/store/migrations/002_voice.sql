-- Sound files and voice messages with their call attempts.

CREATE TABLE sound_files (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES accounts (id),
    name         text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- File stem under the account's folder; a new one per upload, so a call
    -- playing the previous version is never cut mid-file by a replacement.
    stem         text NOT NULL CHECK (stem ~ '^[a-f0-9]{32}$'),
    duration_ms  integer NOT NULL CHECK (duration_ms > 0),
    size_bytes   integer NOT NULL,          -- of the upload as received
    source_format text NOT NULL,            -- what was uploaded (WAV, MP3, ...)
    source_rate  integer NOT NULL,
    formats      text[] NOT NULL,           -- what Asterisk can play (ulaw, alaw, wav16)
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

CREATE TABLE voice_messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id),
    from_number      text NOT NULL CHECK (from_number ~ '^\+[1-9][0-9]{1,14}$'),
    to_number        text NOT NULL CHECK (to_number ~ '^\+[1-9][0-9]{1,14}$'),
    file_name        text NOT NULL,
    retries          integer NOT NULL DEFAULT 0 CHECK (retries >= 0),
    retry_interval   integer NOT NULL DEFAULT 5 CHECK (retry_interval >= 1),  -- minutes
    attempts_made    integer NOT NULL DEFAULT 0,
    -- Outcome of the last finished attempt; final once no retry is left.
    outcome          text CHECK (outcome IN ('completed', 'busy', 'no-answer', 'rejected',
                                             'failed', 'canceled')),
    cause_code       integer,
    cause_text       text,
    answered_at      timestamptz,
    sent_at          timestamptz,   -- the answered call started playing the file
    ended_at         timestamptz,
    heard_at         timestamptz,   -- replayed to the callee on an inbound call
    canceled_at      timestamptz,
    finished_at      timestamptz,   -- nothing more will happen
    due_at           timestamptz,
    lease_attempt_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
    -- No foreign key to sound_files: a finished message keeps its history
    -- after its file is deleted. The API locks the file row instead (see
    -- sound_files.sql) so a file cannot go while a queued message needs it.
);

CREATE INDEX voice_messages_due ON voice_messages (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX voice_messages_account ON voice_messages (account_id, id DESC);
CREATE INDEX voice_messages_to ON voice_messages (to_number, id DESC) WHERE sent_at IS NOT NULL;

CREATE TABLE voice_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id     bigint NOT NULL REFERENCES voice_messages (id),
    dispatcher     text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    answered_at    timestamptz,
    playback_started_at timestamptz,
    finished_at    timestamptz,
    outcome        text CHECK (outcome IN ('completed', 'busy', 'no-answer', 'rejected',
                                           'failed', 'canceled', 'unknown')),
    cause_code     integer,
    cause_text     text,
    detail         text,
    CHECK ((finished_at IS NULL) = (outcome IS NULL))
);

CREATE INDEX voice_attempts_message ON voice_attempts (message_id, id);
CREATE INDEX voice_attempts_open ON voice_attempts (dispatcher) WHERE finished_at IS NULL;

CREATE FUNCTION voice_attempts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'voice_attempts is append-only';
    END IF;
    IF OLD.finished_at IS NOT NULL
       OR NEW.id <> OLD.id OR NEW.message_id <> OLD.message_id
       OR NEW.dispatcher <> OLD.dispatcher
       OR NEW.started_at <> OLD.started_at THEN
        RAISE EXCEPTION 'voice_attempts: attempt % is already final or the change is not allowed', OLD.id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER voice_attempts_append_only
    BEFORE UPDATE OR DELETE ON voice_attempts
    FOR EACH ROW EXECUTE FUNCTION voice_attempts_append_only();

CREATE VIEW voice_message_view AS
SELECT m.*,
       CASE
           WHEN m.finished_at IS NOT NULL THEN m.outcome
           WHEN m.canceled_at IS NOT NULL THEN 'canceled'
           WHEN m.lease_attempt_id IS NOT NULL THEN 'calling'
           WHEN m.attempts_made = 0 THEN 'queued'
           ELSE 'scheduled'
       END AS status,
       CASE WHEN m.lease_attempt_id IS NULL THEN m.due_at END AS next_attempt_at,
       extract(epoch FROM m.ended_at - m.answered_at)::float8 AS duration
FROM voice_messages m;
