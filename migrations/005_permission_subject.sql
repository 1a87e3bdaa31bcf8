-- What a permission request asks, whole (JSON: the permission and its command, or its patterns),
-- so that the request and its outcome edit show exactly what runs. Rows from before keep only
-- their summary, which already carried a (cut) command.
ALTER TABLE permissions ADD COLUMN subject_json TEXT;
