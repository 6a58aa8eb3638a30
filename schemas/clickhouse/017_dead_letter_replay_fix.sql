-- `cdrctl dlq replay --fix`: the fix mapping a replay applied (JSON; empty
-- when the original bytes were sent).
ALTER TABLE cdr.dead_letter_replays
    ADD COLUMN IF NOT EXISTS fix String DEFAULT '';
