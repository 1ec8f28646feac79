-- Webhooks: endpoints per account, and a durable outbox of deliveries written
-- by triggers in the same transaction as the state change that causes each
-- event, so a crash after commit loses no event and a rolled-back change
-- emits none.

CREATE TABLE webhook_endpoints (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id),
    url              text NOT NULL,
    description      text NOT NULL DEFAULT '',
    events           text[] NOT NULL DEFAULT '{}',   -- empty: every event
    -- "whsec_" + base64 of 24 random bytes; shown once, kept to sign.
    secret           text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    failing_since    timestamptz,   -- first failure since the last success
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, id);

-- One row per event per endpoint: the outbox and the delivery log in one.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id       bigint NOT NULL REFERENCES accounts (id),
    event_type       text NOT NULL,
    subject_kind     text,          -- sms, voice, inbound: rendered at the first attempt
    subject_id       bigint,
    data             jsonb,         -- the event's data when there is no resource to render
    -- The exact body, fixed at the first attempt so every retry signs and
    -- sends the same bytes.
    body             text,
    webhook_id       text NOT NULL UNIQUE,   -- stable across retries
    event_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- When a worker should next take it; while one holds it, the lease's
    -- expiry (a worker that dies leaves it to be taken again). NULL when done.
    next_attempt_at  timestamptz DEFAULT clock_timestamp(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    last_latency_ms  integer,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);

-- The one place events are emitted: a delivery for each of the account's
-- enabled endpoints that takes this type, and a wake-up for the workers.
CREATE FUNCTION webhook_emit(p_account bigint, p_type text, p_kind text, p_subject bigint,
                             p_data jsonb DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, account_id, event_type, subject_kind,
                                    subject_id, data, webhook_id)
    SELECT e.id, e.account_id, p_type, p_kind, p_subject, p_data,
           'msg_' || replace(gen_random_uuid()::text, '-', '')
    FROM webhook_endpoints e
    WHERE e.account_id = p_account AND e.enabled
      AND (cardinality(e.events) = 0 OR p_type = ANY (e.events));
    IF FOUND THEN
        PERFORM pg_notify('amivono_webhooks', '');
    END IF;
END $$;

CREATE FUNCTION sms_messages_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.clicked_at IS NULL AND NEW.clicked_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id, 'sms.clicked', 'sms', NEW.id);
    END IF;
    IF OLD.replied_at IS NULL AND NEW.replied_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id, 'sms.replied', 'sms', NEW.id);
    END IF;
    IF OLD.opted_out_at IS NULL AND NEW.opted_out_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id, 'sms.opted_out', 'sms', NEW.id);
    END IF;
    IF OLD.canceled_at IS NULL AND NEW.canceled_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id, 'sms.canceled', 'sms', NEW.id);
    END IF;
    IF OLD.failed_at IS NULL AND NEW.failed_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id, 'sms.failed', 'sms', NEW.id);
    END IF;
    IF OLD.sent_count < OLD.repeat_total AND NEW.sent_count >= NEW.repeat_total THEN
        PERFORM webhook_emit(NEW.account_id, 'sms.completed', 'sms', NEW.id);
    END IF;
    RETURN NULL;
END $$;
-- WHEN: a plain claim or finish of a send (the hot path) calls nothing.
CREATE TRIGGER sms_messages_events AFTER UPDATE ON sms_messages
    FOR EACH ROW WHEN (
        (OLD.clicked_at IS NULL AND NEW.clicked_at IS NOT NULL)
        OR (OLD.replied_at IS NULL AND NEW.replied_at IS NOT NULL)
        OR (OLD.opted_out_at IS NULL AND NEW.opted_out_at IS NOT NULL)
        OR (OLD.canceled_at IS NULL AND NEW.canceled_at IS NOT NULL)
        OR (OLD.failed_at IS NULL AND NEW.failed_at IS NOT NULL)
        OR (OLD.sent_count < OLD.repeat_total AND NEW.sent_count >= NEW.repeat_total))
    EXECUTE FUNCTION sms_messages_events();

CREATE FUNCTION sms_attempts_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.finished_at IS NULL AND NEW.outcome = 'sent' THEN
        PERFORM webhook_emit(m.account_id, 'sms.sent', 'sms', m.id)
        FROM sms_messages m WHERE m.id = NEW.message_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sms_attempts_events AFTER UPDATE ON sms_attempts
    FOR EACH ROW WHEN (OLD.finished_at IS NULL AND NEW.outcome = 'sent')
    EXECUTE FUNCTION sms_attempts_events();

CREATE FUNCTION sms_delivery_reports_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_emit(m.account_id,
                         CASE WHEN NEW.delivered THEN 'sms.delivered' ELSE 'sms.undelivered' END,
                         'sms', m.id)
    FROM sms_attempts a JOIN sms_messages m ON m.id = a.message_id
    WHERE a.id = NEW.attempt_id;
    RETURN NULL;
END $$;
CREATE TRIGGER sms_delivery_reports_events AFTER INSERT ON sms_delivery_reports
    FOR EACH ROW EXECUTE FUNCTION sms_delivery_reports_events();

CREATE FUNCTION voice_attempts_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.answered_at IS NULL AND NEW.answered_at IS NOT NULL THEN
        PERFORM webhook_emit(m.account_id, 'voice.answered', 'voice', m.id)
        FROM voice_messages m WHERE m.id = NEW.message_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER voice_attempts_events AFTER UPDATE ON voice_attempts
    FOR EACH ROW WHEN (OLD.answered_at IS NULL AND NEW.answered_at IS NOT NULL)
    EXECUTE FUNCTION voice_attempts_events();

CREATE FUNCTION voice_messages_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id,
                             CASE NEW.outcome WHEN 'completed' THEN 'voice.completed'
                                              WHEN 'canceled' THEN 'voice.canceled'
                                              ELSE 'voice.failed' END,
                             'voice', NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER voice_messages_events AFTER UPDATE ON voice_messages
    FOR EACH ROW WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION voice_messages_events();

CREATE FUNCTION inbound_messages_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.account_id IS NOT NULL THEN
        PERFORM webhook_emit(NEW.account_id, 'inbound.received', 'inbound', NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER inbound_messages_events AFTER INSERT ON inbound_messages
    FOR EACH ROW EXECUTE FUNCTION inbound_messages_events();

CREATE FUNCTION opt_outs_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row opt_outs;
BEGIN
    row := CASE WHEN TG_OP = 'INSERT' THEN NEW ELSE OLD END;
    PERFORM webhook_emit(row.account_id, 'optout.changed', NULL, NULL, jsonb_build_object(
        'phone', row.phone, 'opted_out', TG_OP = 'INSERT', 'inbound_id', row.inbound_id,
        'changed_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
    RETURN NULL;
END $$;
CREATE TRIGGER opt_outs_events AFTER INSERT OR DELETE ON opt_outs
    FOR EACH ROW EXECUTE FUNCTION opt_outs_events();
