-- The view's column list was fixed when it was created: re-create it so it
-- shows the columns 009 added (payload_len, payload_sha256, payload_truncated).
CREATE OR REPLACE VIEW cdr.dead_letters_final AS
SELECT * FROM cdr.dead_letters LIMIT 1 BY id;
