-- Accounts, API keys, rate-limit windows, idempotency keys, SMS messages and
-- their send attempts.

CREATE TABLE accounts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    -- NULL: the gateway's default (AMIVONO_RATE_LIMIT_PER_HOUR).
    rate_limit_per_hour integer CHECK (rate_limit_per_hour >= 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    -- Keys carry 256 random bits, so a plain SHA-256 is enough: there is
    -- nothing to brute-force that a slow hash would protect.
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- One row per account: the current fixed window (one hour from its first request).
CREATE TABLE rate_limit_windows (
    account_id    bigint PRIMARY KEY REFERENCES accounts (id),
    window_start  timestamptz NOT NULL,
    used          integer NOT NULL
);

CREATE TABLE idempotency_keys (
    account_id       bigint NOT NULL REFERENCES accounts (id),
    key              text NOT NULL,
    request_hash     bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- NULL while the first request is still being processed.
    response_status  integer,
    response_body    jsonb,
    response_location text,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE sms_messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id),
    from_number      text NOT NULL CHECK (from_number ~ '^\+[1-9][0-9]{1,14}$'),
    to_number        text NOT NULL CHECK (to_number ~ '^\+[1-9][0-9]{1,14}$'),
    text             text NOT NULL,          -- what the client asked to send
    body             text NOT NULL,          -- what is sent: text plus the tracked link
    encoding         text NOT NULL CHECK (encoding IN ('GSM-7', 'UCS-2')),
    segments         integer NOT NULL CHECK (segments >= 1),
    repeat_total     integer NOT NULL CHECK (repeat_total >= 1),
    repeat_interval  integer CHECK (repeat_interval >= 1),   -- minutes
    link_token       text UNIQUE,
    sent_count       integer NOT NULL DEFAULT 0,
    failures         integer NOT NULL DEFAULT 0,  -- consecutive failed attempts
    last_sent_at     timestamptz,
    clicked_at       timestamptz,
    canceled_at      timestamptz,
    failed_at        timestamptz,
    -- Queue columns. due_at: when a dispatcher should next take the row; while
    -- a send is leased it is the lease's expiry, so a dead dispatcher's work
    -- becomes due again by itself. NULL once nothing is left to do.
    due_at           timestamptz,
    lease_attempt_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sms_messages_due ON sms_messages (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX sms_messages_account ON sms_messages (account_id, id DESC);

CREATE TABLE sms_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   bigint NOT NULL REFERENCES sms_messages (id),
    send_number  integer NOT NULL,           -- which of the repeat_total sends
    dispatcher   text NOT NULL,
    transport    text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    -- sent: handed to the carrier; failed: not sent; unknown: the dispatcher
    -- lost its lease mid-send, so the SMS may or may not have gone out.
    outcome      text CHECK (outcome IN ('sent', 'failed', 'unknown')),
    detail       text,
    CHECK ((finished_at IS NULL) = (outcome IS NULL))
);

CREATE INDEX sms_attempts_message ON sms_attempts (message_id, id);

-- Attempts are history: written when started, finished once, never changed
-- or removed afterwards.
CREATE FUNCTION sms_attempts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'sms_attempts is append-only';
    END IF;
    IF OLD.finished_at IS NOT NULL
       OR NEW.id <> OLD.id OR NEW.message_id <> OLD.message_id
       OR NEW.send_number <> OLD.send_number OR NEW.dispatcher <> OLD.dispatcher
       OR NEW.transport <> OLD.transport OR NEW.started_at <> OLD.started_at THEN
        RAISE EXCEPTION 'sms_attempts: attempt % is already final or the change is not allowed', OLD.id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER sms_attempts_append_only
    BEFORE UPDATE OR DELETE ON sms_attempts
    FOR EACH ROW EXECUTE FUNCTION sms_attempts_append_only();

-- The one definition of a message's status, shared by every reader.
CREATE VIEW sms_message_view AS
SELECT m.*,
       CASE
           WHEN m.canceled_at IS NOT NULL THEN 'canceled'
           WHEN m.clicked_at IS NOT NULL THEN 'clicked'
           WHEN m.failed_at IS NOT NULL THEN 'failed'
           WHEN m.sent_count >= m.repeat_total THEN 'completed'
           WHEN m.lease_attempt_id IS NOT NULL THEN 'sending'
           WHEN m.sent_count = 0 THEN 'queued'
           ELSE 'scheduled'
       END AS status,
       CASE WHEN m.lease_attempt_id IS NULL THEN m.due_at END AS next_send_at
FROM sms_messages m;
