-- A resumable upload's staging, written with its durable offset in the same statement: the
-- running SHA-256's state after exactly the durable bytes (so any node continues without
-- reading the bytes back), and, when uploads are staged in object storage, the multipart upload
-- and its parts (`{"upload_id": …, "parts": [{"etag", "size"}]}`).
ALTER TABLE uploads ADD COLUMN hash_state BYTEA;
ALTER TABLE uploads ADD COLUMN staged_parts TEXT;
