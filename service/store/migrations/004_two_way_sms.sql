-- Two-way SMS: numbers owned by accounts, inbound messages, opt-outs, and the
-- carrier's delivery reports.

-- A number belongs to one account at most.
CREATE TABLE phone_numbers (
    number      text PRIMARY KEY CHECK (number ~ '^\+[1-9][0-9]{1,14}$'),
    account_id  bigint NOT NULL REFERENCES accounts (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_numbers_account ON phone_numbers (account_id, number);

-- Every SMS the trunk delivered to us, once. account_id NULL: sent to a
-- number nobody owns (kept for the operator, harms nothing).
CREATE TABLE inbound_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint REFERENCES accounts (id),
    from_number   text NOT NULL,
    to_number     text NOT NULL,
    body          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('reply', 'stop', 'start', 'help')),
    -- The SIP request's Call-ID and CSeq: a MESSAGE delivered again (the
    -- carrier retrying, or two dispatchers both hearing it) is not a second one.
    sip_key       text NOT NULL UNIQUE,
    -- Outbound SMS this one stopped (replied or opted out).
    affected_ids  bigint[] NOT NULL DEFAULT '{}',
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbound_messages_account ON inbound_messages (account_id, id DESC);

-- A phone that said STOP to an account; START removes the row.
CREATE TABLE opt_outs (
    account_id  bigint NOT NULL REFERENCES accounts (id),
    phone       text NOT NULL,
    inbound_id  bigint REFERENCES inbound_messages (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, phone)
);

-- The carrier's receipt for one attempt, kept once (the first that came).
-- A report may arrive before the attempt's own outcome is written.
CREATE TABLE sms_delivery_reports (
    attempt_id   bigint PRIMARY KEY REFERENCES sms_attempts (id),
    delivered    boolean NOT NULL,       -- stat:DELIVRD
    stat         text NOT NULL,          -- DELIVRD, UNDELIV, REJECTD, EXPIRED, ...
    error        text NOT NULL,          -- the carrier's err: code
    receipt      text NOT NULL,          -- the whole receipt, as the carrier sent it
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- How far the dispatchers have read the gateway's inbox file (AMIVONO_SMS_INBOX).
CREATE TABLE inbox_offsets (
    path      text PRIMARY KEY,
    inode     bigint NOT NULL,   -- a new file (rotated) starts again from 0
    "offset"  bigint NOT NULL
);

ALTER TABLE sms_messages
    ADD COLUMN stop_on_reply    boolean NOT NULL DEFAULT true,
    -- Sent even to a phone that opted out: the opt-out's own confirmation.
    ADD COLUMN opt_out_exempt   boolean NOT NULL DEFAULT false,
    ADD COLUMN replied_at       timestamptz,
    ADD COLUMN reply_id         bigint REFERENCES inbound_messages (id),
    ADD COLUMN opted_out_at     timestamptz,
    ADD COLUMN delivered_count  integer NOT NULL DEFAULT 0,
    ADD COLUMN delivered_at     timestamptz,
    -- The one definition of "no more sends": every statement that claims,
    -- schedules or stops a message asks this column.
    ADD COLUMN halted boolean GENERATED ALWAYS AS (
        canceled_at IS NOT NULL OR clicked_at IS NOT NULL OR failed_at IS NOT NULL
        OR replied_at IS NOT NULL OR opted_out_at IS NOT NULL) STORED;

CREATE INDEX sms_messages_pending_to ON sms_messages (account_id, to_number)
    WHERE due_at IS NOT NULL;

DROP VIEW sms_message_view;
-- The one definition of a message's status, shared by every reader.
CREATE VIEW sms_message_view AS
SELECT m.*,
       CASE
           WHEN m.canceled_at IS NOT NULL THEN 'canceled'
           WHEN m.clicked_at IS NOT NULL THEN 'clicked'
           WHEN m.replied_at IS NOT NULL THEN 'replied'
           WHEN m.opted_out_at IS NOT NULL THEN 'opted_out'
           WHEN m.failed_at IS NOT NULL THEN 'failed'
           WHEN m.sent_count >= m.repeat_total THEN 'completed'
           WHEN m.lease_attempt_id IS NOT NULL THEN 'sending'
           WHEN m.sent_count = 0 THEN 'queued'
           ELSE 'scheduled'
       END AS status,
       CASE WHEN m.lease_attempt_id IS NULL THEN m.due_at END AS next_send_at
FROM sms_messages m;
