-- Browser sessions. Only the SHA-256 of the cookie value is stored: a copy of the database
-- does not let anyone sign in.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
) STRICT;
