-- A deleted service account stays for the audit trail and the keys it owned (which are revoked
-- with it); lists and lookups leave it out.
ALTER TABLE service_accounts ADD COLUMN deleted_at INTEGER;
