-- name: ensure_account^
-- Creates the account if it is new; returns it either way.
INSERT INTO accounts AS a (name) VALUES (:name)
ON CONFLICT (name) DO UPDATE SET name = a.name
RETURNING id, name, rate_limit_per_hour;

-- name: set_rate_limit^
UPDATE accounts SET rate_limit_per_hour = :rate_limit_per_hour
WHERE name = :name
RETURNING id, name, rate_limit_per_hour;

-- name: set_sms_transport^
UPDATE accounts SET sms_transport = :sms_transport
WHERE name = :name
RETURNING id, name, sms_transport;

-- name: id_by_name$
SELECT id FROM accounts WHERE name = :name;
