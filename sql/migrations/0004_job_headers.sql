-- pgqueue schema, version 4: the headers a producer sent with a job (apply_async's
-- headers= and what before_task_publish receivers added), a JSON object or NULL. Kept in
-- results too, so that a tracer's context outlives the job.
ALTER TABLE jobs ADD COLUMN headers jsonb;
ALTER TABLE results ADD COLUMN headers jsonb;
