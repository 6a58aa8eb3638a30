-- The source record's own timestamp, so a replay gives the record back its
-- time (the assembler judges an event's clock against its record's).
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS source_ts Nullable(DateTime64(3, 'UTC'));

-- The view's column list was fixed when it was created (see 010).
CREATE OR REPLACE VIEW cdr.dead_letters_final AS
SELECT * FROM cdr.dead_letters LIMIT 1 BY id;
