-- A resumable upload's staging, written with its durable offset in the same statement: the
-- running SHA-256's state after exactly the durable bytes (so a restart, or another node,
-- continues without reading the bytes back), and, when uploads are staged in object storage,
-- the multipart upload and its parts as JSON (`{"upload_id": …, "parts": [{"etag", "size"}]}`).
-- Rows from before have neither: their bytes are in `tmp/` and are re-hashed once.
ALTER TABLE uploads ADD COLUMN hash_state BLOB;
ALTER TABLE uploads ADD COLUMN staged_parts TEXT;
