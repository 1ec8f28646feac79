-- name: upsert^
-- Creates or replaces the account's file of that name; returns the row and
-- the stem it replaced (NULL for a new file) so the old audio can be removed.
WITH old AS (
    SELECT stem FROM sound_files WHERE account_id = :account_id AND name = :name
)
INSERT INTO sound_files AS f (account_id, name, stem, duration_ms, size_bytes,
                              source_format, source_rate, formats)
VALUES (:account_id, :name, :stem, :duration_ms, :size_bytes, :source_format,
        :source_rate, :formats)
ON CONFLICT (account_id, name) DO UPDATE SET
    stem = EXCLUDED.stem, duration_ms = EXCLUDED.duration_ms,
    size_bytes = EXCLUDED.size_bytes, source_format = EXCLUDED.source_format,
    source_rate = EXCLUDED.source_rate, formats = EXCLUDED.formats, updated_at = now()
RETURNING f.*, (SELECT stem FROM old) AS old_stem;

-- name: get^
SELECT * FROM sound_files WHERE account_id = :account_id AND name = :name;

-- name: lock_for_delete^
-- A delete takes the file FOR UPDATE; a voice message being created reads it
-- FOR SHARE in its own insert (voice_messages.sql create), so the two never cross.
SELECT * FROM sound_files WHERE account_id = :account_id AND name = :name FOR UPDATE;

-- name: list_for_account
SELECT * FROM sound_files WHERE account_id = :account_id ORDER BY name;

-- name: delete!
DELETE FROM sound_files WHERE id = :id;

-- name: admin_list
SELECT f.*, a.name AS account
FROM sound_files f JOIN accounts a ON a.id = f.account_id
WHERE (:account::text IS NULL OR a.name = :account)
ORDER BY a.name, f.name;
