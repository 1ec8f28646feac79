-- How far the gateway's inbox file has been read.

-- name: ensure!
-- The row replay_for locks (a new file starts at 0).
INSERT INTO inbox_offsets (path, inode, "offset") VALUES (:path, :inode, 0)
ON CONFLICT (path) DO NOTHING;

-- name: replay_for^
-- Taken for the whole replay of a chunk, in its transaction: one dispatcher
-- replays at a time, and the others skip (no row) rather than replay the
-- same lines concurrently and write their reports twice.
SELECT inode, "offset" FROM inbox_offsets WHERE path = :path FOR UPDATE SKIP LOCKED;

-- name: set_to!
-- By the holder of replay_for's lock only: where the next replay starts (a
-- new inode, or 0 after a truncation, replaces).
UPDATE inbox_offsets SET inode = :inode, "offset" = :offset WHERE path = :path;
