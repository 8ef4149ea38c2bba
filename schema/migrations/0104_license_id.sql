-- `events.license_id`: the LiveChat license of the webhook. LiveChat v3.3
-- bodies name their tenant by license_id (an integer) instead of
-- organization_id (webhooks.md §3, §6); for them ingest looks up the
-- installed organization holding the license and organization_id is that
-- organization, or '' when none is known. 0 when the body carries no
-- license_id (every v3.4+ webhook).
--
-- 18.16 has no ADD COLUMN IF NOT EXISTS: Migrate skips an ADD COLUMN whose
-- column is already there (see schema.go), so a re-run is a no-op.
ALTER TABLE {{.DB}}.events {{.OnCluster}} ADD COLUMN license_id UInt64 DEFAULT 0 AFTER organization_id;
