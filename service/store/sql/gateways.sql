-- Every statement on gateways and gateway_state: the operator's and the dispatchers'.

-- name: add^
-- No row when the name is taken.
INSERT INTO gateways (name, ari_url, ari_user, ari_password, trunk, calls, sms_per_second)
VALUES (:name, :ari_url, :ari_user, :ari_password, :trunk, :calls, :sms_per_second)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: set_enabled^
UPDATE gateways SET enabled = :enabled, updated_at = now()
WHERE name = :name
RETURNING name, enabled;

-- name: remove^
DELETE FROM gateways WHERE name = :name RETURNING name;

-- name: all
-- What each dispatcher reads every second to follow the operator's changes.
SELECT name, ari_url, ari_user, ari_password, trunk, calls, sms_per_second, enabled
FROM gateways
ORDER BY name;

-- name: heartbeat!
-- One row per node this dispatcher knows, written in one statement.
INSERT INTO gateway_state (gateway, dispatcher, connected, in_use, calls_in_flight,
                           sends_per_second, last_error, last_error_at, updated_at)
SELECT g, :dispatcher, c, u, f, s, nullif(e, ''), CASE WHEN e <> '' THEN ea END, now()
FROM unnest(:gateways::text[], :connected::bool[], :in_use::bool[], :calls::int[],
            :sends::real[], :errors::text[], :error_ats::timestamptz[]) AS t(g, c, u, f, s, e, ea)
ON CONFLICT (gateway, dispatcher) DO UPDATE
SET connected = excluded.connected, in_use = excluded.in_use,
    calls_in_flight = excluded.calls_in_flight, sends_per_second = excluded.sends_per_second,
    last_error = coalesce(excluded.last_error, gateway_state.last_error),
    last_error_at = coalesce(excluded.last_error_at, gateway_state.last_error_at),
    updated_at = now();

-- name: users
-- How many live dispatchers use each node (a fresh heartbeat, connected and
-- enabled): a node's SMS pace is shared among them.
SELECT gateway, count(*) AS dispatchers
FROM gateway_state
WHERE in_use AND updated_at > now() - make_interval(secs => :fresh_seconds)
GROUP BY gateway;

-- name: forget!
-- A dispatcher that stops takes its rows with it.
DELETE FROM gateway_state WHERE dispatcher = :dispatcher;

-- name: live_state
-- For `gateways list`: each node (the configured ones, or 'default' when
-- none is) with what the dispatchers' fresh heartbeats say about it.
WITH nodes AS (
    SELECT name, ari_url, trunk, calls, sms_per_second, enabled, true AS configured
    FROM gateways
    UNION ALL
    SELECT 'default', :default_url, NULL, NULL, NULL, true, false
    WHERE NOT EXISTS (SELECT 1 FROM gateways)
),
fresh AS (
    SELECT * FROM gateway_state
    WHERE updated_at > now() - make_interval(secs => :fresh_seconds)
)
SELECT n.name, n.ari_url, n.trunk, n.calls, n.sms_per_second, n.enabled, n.configured,
       count(f.dispatcher) AS dispatchers,
       count(f.dispatcher) FILTER (WHERE f.connected) AS connected,
       coalesce(sum(f.calls_in_flight), 0)::int AS calls_in_flight,
       coalesce(sum(f.sends_per_second), 0)::float8 AS sends_per_second,
       (SELECT s.last_error FROM gateway_state s
        WHERE s.gateway = n.name AND s.last_error IS NOT NULL
        ORDER BY s.last_error_at DESC LIMIT 1) AS last_error,
       (SELECT max(s.last_error_at) FROM gateway_state s WHERE s.gateway = n.name) AS last_error_at
FROM nodes n LEFT JOIN fresh f ON f.gateway = n.name
GROUP BY n.name, n.ari_url, n.trunk, n.calls, n.sms_per_second, n.enabled, n.configured
ORDER BY n.name;
