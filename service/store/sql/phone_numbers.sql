-- Numbers owned by accounts: the senders an account may use, and where
-- inbound SMS are routed.

-- name: add^
-- Gives the number to the account; no row when another account owns it.
INSERT INTO phone_numbers AS p (number, account_id)
VALUES (:number, :account_id)
ON CONFLICT (number) DO UPDATE SET number = p.number
    WHERE p.account_id = EXCLUDED.account_id
RETURNING number, account_id, created_at;

-- name: remove^
DELETE FROM phone_numbers WHERE number = :number AND account_id = :account_id
RETURNING number;

-- name: owns$
-- Whether the account may send from :from_number (always under :any_sender):
-- asked only when a create inserted nothing, to say why.
SELECT :any_sender OR EXISTS (
    SELECT 1 FROM phone_numbers WHERE number = :from_number AND account_id = :account_id);

-- name: list_for_account
SELECT number, created_at FROM phone_numbers
WHERE account_id = :account_id
ORDER BY number;

-- name: admin_list
SELECT p.number, a.name AS account, p.created_at
FROM phone_numbers p JOIN accounts a ON a.id = p.account_id
WHERE (:account::text IS NULL OR a.name = :account)
ORDER BY a.name, p.number;
