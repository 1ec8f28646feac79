-- name: count_request^
-- Counts one request in the account's window; a window lasts one hour from
-- its first request. One row per account, so every API process shares it.
INSERT INTO rate_limit_windows AS w (account_id, window_start, used)
VALUES (:account_id, now(), 1)
ON CONFLICT (account_id) DO UPDATE SET
    window_start = CASE WHEN w.window_start + interval '1 hour' <= now()
                        THEN now() ELSE w.window_start END,
    used = CASE WHEN w.window_start + interval '1 hour' <= now()
                THEN 1 ELSE w.used + 1 END
RETURNING used,
          ceil(extract(epoch FROM w.window_start + interval '1 hour'))::bigint AS reset_at,
          ceil(extract(epoch FROM w.window_start + interval '1 hour' - now()))::bigint
              AS reset_in;
