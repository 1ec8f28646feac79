-- A reply, STOP or cancel that comes after an SMS's last send still ends its
-- escalation call (sql/inbound_messages.sql stop_replied, stop_opted_out;
-- sql/sms_messages.sql cancel match such an SMS). STOP now ends it too: 007's
-- trigger fired on a click, a reply or a cancel only.

-- Serves stop_replied and stop_opted_out for SMS with nothing left to send.
CREATE INDEX sms_messages_escalated ON sms_messages (account_id, to_number)
    WHERE escalated_to IS NOT NULL;

CREATE OR REPLACE FUNCTION sms_messages_end_escalation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    in_flight bigint;
BEGIN
    UPDATE voice_messages
    SET canceled_at = now(), updated_at = now(),
        cause_text = 'the SMS it escalated was ' || CASE
            WHEN NEW.clicked_at IS NOT NULL THEN 'clicked'
            WHEN NEW.replied_at IS NOT NULL THEN 'replied to'
            WHEN NEW.opted_out_at IS NOT NULL THEN 'answered with STOP'
            ELSE 'canceled' END,
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

DROP TRIGGER sms_messages_end_escalation ON sms_messages;
CREATE TRIGGER sms_messages_end_escalation AFTER UPDATE ON sms_messages
    FOR EACH ROW WHEN (NEW.escalated_to IS NOT NULL AND (
        (OLD.clicked_at IS NULL AND NEW.clicked_at IS NOT NULL)
        OR (OLD.replied_at IS NULL AND NEW.replied_at IS NOT NULL)
        OR (OLD.opted_out_at IS NULL AND NEW.opted_out_at IS NOT NULL)
        OR (OLD.canceled_at IS NULL AND NEW.canceled_at IS NOT NULL)))
    EXECUTE FUNCTION sms_messages_end_escalation();
