-- Model allow-lists: JSON arrays of model names or `*` patterns; an empty array allows every model.
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '[]';
ALTER TABLE projects ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '[]';
