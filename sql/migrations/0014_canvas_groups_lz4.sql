-- pgqueue schema, version 14: a group's row costs its send almost nothing. The members
-- of a group of 10,000 are a 160 kB uuid[]; pglz spent about as long compressing it as
-- Postgres spends writing 600 of the group's jobs (4-5 ms of a 60 ms statement), lz4
-- compresses it as well (40 kB, pglz 33 kB) in a tenth of that. A server built without
-- lz4 keeps pglz: the groups work the same, their send is a few ms slower.
-- See docs/canvas.md, "Cost".
DO $lz4$
BEGIN
    ALTER TABLE canvas_groups ALTER COLUMN members SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: canvas_groups.members stays with pglz';
END
$lz4$;
