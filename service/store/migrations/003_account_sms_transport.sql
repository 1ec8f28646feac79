-- Which SMS transport an account's messages use; NULL: the dispatcher's default
-- (AMIVONO_SMS_TRANSPORT).
ALTER TABLE accounts ADD COLUMN sms_transport text
    CHECK (sms_transport IN ('ari-pjsip', 'dongle-ami'));
