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

-- name: set_allowed_countries^
-- NULL: back to the AMIVONO_ALLOWED_COUNTRIES default; []: every country.
UPDATE accounts SET allowed_countries = :allowed_countries
WHERE name = :name
RETURNING id, name, allowed_countries;

-- name: lock_destinations
-- Serialises creates to each (account, number) of one create or a batch
-- until commit, so the hourly count of destination_checks is exact under
-- concurrent requests; taken in one order (the subquery's) so two batches
-- never wait on each other in a circle.
SELECT pg_advisory_xact_lock(k) FROM (
    SELECT DISTINCT hashtextextended(t, a) AS k
    FROM unnest(:to_numbers::text[], :account_ids::bigint[]) AS d (t, a)
    ORDER BY k
) keys;

-- name: destination_checks
-- For each create of one or a batch, one row per create in the arrays'
-- order (place): the account's country list and its messages to the number
-- over the last hour (SMS and voice), with the seconds until the oldest of
-- them leaves it. At most :cap rows are read from each table (none when the
-- cap is off): the answer only needs to say whether the cap is reached, and
-- the work stays bounded however many messages went to the number. Also
-- whether `create` would make its row (owned: its sender is the account's or
-- :any_senders; opted_out: `to` sent STOP), so a create refused for those
-- takes no place under the cap of the batch's later creates.
SELECT d.place, a.allowed_countries, r.last_hour, r.frees_in,
       (d.any_sender OR EXISTS (
            SELECT 1 FROM phone_numbers
            WHERE number = d.from_number AND account_id = d.account_id)) AS owned,
       EXISTS (SELECT 1 FROM opt_outs
               WHERE account_id = d.account_id AND phone = d.to_number) AS opted_out
FROM unnest(:account_ids::bigint[], :to_numbers::text[], :from_numbers::text[],
            :any_senders::bool[])
     WITH ORDINALITY AS d (account_id, to_number, from_number, any_sender, place)
JOIN accounts a ON a.id = d.account_id
CROSS JOIN LATERAL (
    WITH recent AS (
        (SELECT created_at FROM sms_messages
         WHERE account_id = d.account_id AND to_number = d.to_number
           AND created_at > now() - interval '1 hour'
         ORDER BY created_at LIMIT :cap)
        UNION ALL
        (SELECT created_at FROM voice_messages
         WHERE account_id = d.account_id AND to_number = d.to_number
           AND created_at > now() - interval '1 hour'
         ORDER BY created_at LIMIT :cap)
    )
    SELECT count(*) AS last_hour,
           ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now()))::int
               AS frees_in
    FROM recent
) r
ORDER BY d.place;
