-- pgqueue schema, version 3: a job's times are finite and its attempt is not negative.
-- A row written by plain SQL with run_at, expires_at or created_at of 'infinity' or
-- '-infinity' was claimed (it sorts first) and then could not be read by the worker
-- (Python has no infinite datetime), so it stayed started until its lease ran out, claim
-- after claim. The database now refuses such a row when it is written.
ALTER TABLE jobs ADD CONSTRAINT jobs_times_finite CHECK (
    isfinite(run_at) AND isfinite(created_at)
    AND (expires_at IS NULL OR isfinite(expires_at))
    AND (started_at IS NULL OR isfinite(started_at))
    AND (lease_expires_at IS NULL OR isfinite(lease_expires_at)));
-- An attempt below zero (plain SQL again) made the worker's attempt fencing and the
-- result's attempt disagree; claims count up from 0, and a release never goes below it.
ALTER TABLE jobs ADD CONSTRAINT jobs_attempt_not_negative CHECK (attempt >= 0);
