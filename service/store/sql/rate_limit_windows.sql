-- name: admit_key^
-- Authenticates a key and counts the request against its account's window,
-- in one round trip: no row means the key is unknown or revoked. A window
-- lasts one hour from its first request; one row per account, so every API
-- process shares it. :n requests of the same key are counted at once (the API
-- counts together the requests that came while its previous count was in
-- flight); `used` is then the count after the last of them.
WITH account AS (
    SELECT a.id, a.name, a.rate_limit_per_hour
    FROM api_keys k JOIN accounts a ON a.id = k.account_id
    WHERE k.key_hash = :key_hash AND k.revoked_at IS NULL
),
counted AS (
    INSERT INTO rate_limit_windows AS w (account_id, window_start, used)
    SELECT id, now(), :n FROM account
    ON CONFLICT (account_id) DO UPDATE SET
        window_start = CASE WHEN w.window_start + interval '1 hour' <= now()
                            THEN now() ELSE w.window_start END,
        used = CASE WHEN w.window_start + interval '1 hour' <= now()
                    THEN :n ELSE w.used + :n END
    RETURNING account_id, used, window_start
)
SELECT account.id AS account_id, account.name, account.rate_limit_per_hour, counted.used,
       ceil(extract(epoch FROM counted.window_start + interval '1 hour'))::bigint AS reset_at,
       ceil(extract(epoch FROM counted.window_start + interval '1 hour' - now()))::bigint
           AS reset_in
FROM account JOIN counted ON counted.account_id = account.id;
