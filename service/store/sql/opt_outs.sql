-- Phones that said STOP to an account.

-- name: add^
-- No row when the phone had already opted out.
INSERT INTO opt_outs (account_id, phone, inbound_id)
VALUES (:account_id, :phone, :inbound_id)
ON CONFLICT (account_id, phone) DO NOTHING
RETURNING phone;

-- name: remove^
DELETE FROM opt_outs WHERE account_id = :account_id AND phone = :phone
RETURNING phone;

-- name: list_page
SELECT phone, inbound_id, created_at FROM opt_outs
WHERE account_id = :account_id AND phone > :after
ORDER BY phone
LIMIT :limit;

-- name: admin_list
SELECT o.phone, a.name AS account, o.inbound_id, o.created_at
FROM opt_outs o JOIN accounts a ON a.id = o.account_id
WHERE (:account::text IS NULL OR a.name = :account)
ORDER BY a.name, o.phone;
