-- pgqueue schema, version 5: any string is a task id, as in Celery (task_id="order-42").
-- The rows keep their uuid primary keys: a task id that is a UUID is the row's id; any
-- other string names the row uuid5(<namespace>, string) (pgqueue.limits.row_id) and is
-- kept here as given. NULL means the id is the row's uuid. Carried from jobs to results
-- by every statement that finishes a job.
ALTER TABLE jobs ADD COLUMN task_id text;
ALTER TABLE results ADD COLUMN task_id text;

-- `WHERE task_id = 'order-42'` on either table is an index look-up. Partial: ids that
-- pgqueue made (the common case) add nothing to them, so enqueue and finish cost the same.
CREATE INDEX jobs_task_id_idx ON jobs (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX results_task_id_idx ON results (task_id) WHERE task_id IS NOT NULL;

-- all_jobs gains task_id: the id as the user knows it (the string given, else the uuid).
CREATE OR REPLACE VIEW all_jobs AS
SELECT id, queue, task,
       CASE state WHEN 'started' THEN 'STARTED'
                  WHEN 'retry' THEN 'RETRY'
                  ELSE CASE WHEN attempt > 0 THEN 'RETRY' ELSE 'PENDING' END END AS state,
       state AS job_state, priority, args, kwargs, NULL::jsonb AS result, last_error AS error,
       attempt, worker, run_at, created_at, started_at, NULL::timestamptz AS finished_at,
       coalesce(task_id, id::text) AS task_id
  FROM jobs
UNION ALL
SELECT id, queue, task, state, state AS job_state, priority, args, kwargs, result, error,
       attempt, worker, NULL, created_at, started_at, finished_at,
       coalesce(task_id, id::text)
  FROM results;
