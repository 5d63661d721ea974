-- IP allow-lists: JSON arrays of CIDR ranges; an empty array allows every address.
ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
ALTER TABLE projects ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
