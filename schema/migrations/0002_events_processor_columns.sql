-- Columns the processor fills beyond 0001 (added, never renamed):
--   tags              the thread's tags when the payload lists them
--                     (incoming_chat thread.tags); tag_added/tag_removed rows
--                     keep using the single `tag` column.
--   rating_has_score  1 when the row carries a rating score. rating_score 0
--                     means thumbs down, so "no score" needs its own flag.
ALTER TABLE {{.DB}}.events {{.OnCluster}}
    ADD COLUMN tags Array(String) AFTER tag,
    ADD COLUMN rating_has_score UInt8 AFTER rating_score;
