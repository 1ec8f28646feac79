-- Several gateway Asterisk nodes behind one queue. With no rows, the
-- AMIVONO_ARI_* settings describe the single gateway (named 'default'), as
-- before this table existed.

CREATE TABLE gateways (
    name           text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,32}$'),
    ari_url        text NOT NULL CHECK (ari_url ~ '^https?://[^/?#\s]+(/[^?#\s]*)?$'),
    ari_user       text NOT NULL CHECK (ari_user <> ''),
    ari_password   text NOT NULL CHECK (ari_password <> ''),
    trunk          text CHECK (trunk ~ '^[A-Za-z0-9._-]{1,64}$'),  -- NULL: AMIVONO_TRUNK_ENDPOINT
    calls          integer CHECK (calls >= 0),                    -- NULL: AMIVONO_CALLS_PER_TRUNK
    sms_per_second real CHECK (sms_per_second > 0),               -- NULL: AMIVONO_SMS_PER_SECOND
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Each dispatcher's view of each node, written about once a second (the
-- heartbeat). `gateways list` sums the fresh rows; a dispatcher divides a
-- node's SMS pace by the dispatchers that use it. No foreign key: the
-- implicit 'default' node has no row in gateways, and a removed node's rows
-- simply go stale.
CREATE TABLE gateway_state (
    gateway          text NOT NULL,
    dispatcher       text NOT NULL,
    connected        boolean NOT NULL,
    in_use           boolean NOT NULL,   -- connected and enabled as this dispatcher sees it
    calls_in_flight  integer NOT NULL,
    sends_per_second real NOT NULL,
    last_error       text,
    last_error_at    timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, dispatcher)
);

-- The node that carried each attempt (NULL for attempts made before this
-- migration, and for SMS sent through another transport than ARI).
ALTER TABLE sms_attempts ADD COLUMN gateway text;
ALTER TABLE voice_attempts ADD COLUMN gateway text;
-- The per-node call cap counts live calls per node.
CREATE INDEX voice_attempts_open_gateway ON voice_attempts (gateway) WHERE finished_at IS NULL;

-- Attempts stay append-only, with one correction allowed: a send recorded
-- `sent` (Asterisk answered 202) on a node that died a moment later may
-- never have left it, so it becomes `unknown` and the SMS is sent again
-- (sms_messages.sql, resend_unsettled). Nothing else of a final attempt may change.
CREATE OR REPLACE FUNCTION sms_attempts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'sms_attempts is append-only';
    END IF;
    IF NEW.id <> OLD.id OR NEW.message_id <> OLD.message_id
       OR NEW.send_number <> OLD.send_number OR NEW.dispatcher <> OLD.dispatcher
       OR NEW.transport <> OLD.transport OR NEW.started_at <> OLD.started_at
       OR (OLD.finished_at IS NOT NULL AND NOT (
               OLD.outcome = 'sent' AND NEW.outcome = 'unknown'
               AND NEW.finished_at = OLD.finished_at
               AND NEW.gateway IS NOT DISTINCT FROM OLD.gateway)) THEN
        RAISE EXCEPTION 'sms_attempts: attempt % is already final or the change is not allowed', OLD.id;
    END IF;
    RETURN NEW;
END $$;
