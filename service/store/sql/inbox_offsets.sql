-- How far the gateway's inbox file has been read.

-- name: get^
SELECT inode, "offset" FROM inbox_offsets WHERE path = :path;

-- name: advance!
-- Never backwards: two dispatchers reading the same lines both store them
-- once (by SIP request) and the further offset wins. A new inode replaces.
INSERT INTO inbox_offsets AS o (path, inode, "offset") VALUES (:path, :inode, :offset)
ON CONFLICT (path) DO UPDATE SET
    inode = EXCLUDED.inode,
    "offset" = CASE WHEN o.inode = EXCLUDED.inode
                    THEN greatest(o."offset", EXCLUDED."offset") ELSE EXCLUDED."offset" END;

-- name: reset!
-- The file was truncated in place: read it again from its start.
UPDATE inbox_offsets SET "offset" = 0 WHERE path = :path AND inode = :inode;
