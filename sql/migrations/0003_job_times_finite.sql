-- pgqueue schema, version 3: a job's times are finite.
-- A row written by plain SQL with run_at, expires_at or created_at of 'infinity' or
-- '-infinity' was claimed (it sorts first) and then could not be read by the worker
-- (Python has no infinite datetime), so it stayed started until its lease ran out, claim
-- after claim. The database now refuses such a row when it is written.
ALTER TABLE jobs ADD CONSTRAINT jobs_times_finite CHECK (
    isfinite(run_at) AND isfinite(created_at)
    AND (expires_at IS NULL OR isfinite(expires_at))
    AND (started_at IS NULL OR isfinite(started_at))
    AND (lease_expires_at IS NULL OR isfinite(lease_expires_at)));
