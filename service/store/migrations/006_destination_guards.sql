-- Destination guards. The countries an account may send to; NULL: the
-- AMIVONO_ALLOWED_COUNTRIES setting, an empty array: every country.
ALTER TABLE accounts ADD COLUMN allowed_countries text[];

-- The hourly cap per destination counts an account's messages to one number
-- over the last hour, SMS and voice.
CREATE INDEX sms_messages_account_to ON sms_messages (account_id, to_number, created_at);
CREATE INDEX voice_messages_account_to ON voice_messages (account_id, to_number, created_at);
