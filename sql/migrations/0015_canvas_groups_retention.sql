-- pgqueue schema, version 15: canvas_groups rows expire with results. A group's row
-- (GroupResult.restore, a chord body's parent) stayed for ever unless
-- GroupResult.delete() was called: about 40 kB for 10,000 members. The pruner now reads
-- the groups older than result_expires in this index's order, from where its last batch
-- stopped, and deletes those with nothing live left: no member or chord body in jobs or
-- canvas_steps, and no result of theirs younger than the retention. See docs/canvas.md.
CREATE INDEX canvas_groups_created_idx ON canvas_groups (created_at, id);
