-- The vitscale database: migration 1. Embedded into vitscale_storage at build time and applied
-- to a fresh database by Store::Open. Once released it never changes: later changes are new
-- migrations appended in storage/migrations.cc (docs/storage.md, "Migrations").
--
-- Times are REAL seconds since the Unix epoch (UTC). FLOPs are plain FLOPs. Tables are STRICT
-- so that a wrong type is an error rather than a silent conversion.

CREATE TABLE sweeps (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
  definition TEXT NOT NULL,  -- the YAML as submitted
  created_at REAL NOT NULL
) STRICT;

CREATE TABLE jobs (
  -- lower-case hex SHA-256 of config_json
  id TEXT PRIMARY KEY CHECK (length(id) = 64 AND id NOT GLOB '*[^0-9a-f]*'),
  model TEXT NOT NULL CHECK (length(model) > 0),
  family TEXT NOT NULL CHECK (family IN ('ViT', 'ResNet', 'hybrid')),
  dataset TEXT NOT NULL CHECK (length(dataset) > 0),
  subset_size INTEGER NOT NULL CHECK (subset_size > 0),
  epochs REAL NOT NULL CHECK (epochs > 0),
  config_json TEXT NOT NULL CHECK (json_valid(config_json)),
  planned_train_flops REAL NOT NULL CHECK (planned_train_flops >= 0),
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'leased', 'running',
      'succeeded', 'failed', 'cancelled', 'preempted')),
  priority INTEGER NOT NULL DEFAULT 0,
  ranks INTEGER NOT NULL DEFAULT 1 CHECK (ranks >= 1),
  gpus_per_rank INTEGER NOT NULL DEFAULT 0 CHECK (gpus_per_rank >= 0),
  retries_left INTEGER NOT NULL DEFAULT 0 CHECK (retries_left >= 0),
  submit_order INTEGER NOT NULL UNIQUE,
  submitted_at REAL NOT NULL,
  updated_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

-- The scheduler's question: the next runnable job, highest priority first, then oldest.
CREATE INDEX jobs_by_state_priority ON jobs (state, priority DESC, submit_order);
CREATE INDEX jobs_by_model ON jobs (model, submit_order);

-- A job may belong to several sweeps (the same config submitted twice is one job).
CREATE TABLE sweep_jobs (
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
  job_id TEXT NOT NULL REFERENCES jobs (id),
  position INTEGER NOT NULL,  -- the job's place in the sweep's expansion, from 0
  PRIMARY KEY (sweep_id, job_id),
  UNIQUE (sweep_id, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX sweep_jobs_by_job ON sweep_jobs (job_id);

CREATE TABLE agents (
  id TEXT PRIMARY KEY CHECK (length(id) > 0),
  host TEXT NOT NULL CHECK (length(host) > 0),
  slots INTEGER NOT NULL CHECK (slots >= 0),
  gpus INTEGER NOT NULL CHECK (gpus >= 0),
  registered_at REAL NOT NULL,
  last_heartbeat_at REAL NOT NULL
) STRICT;

CREATE TABLE attempts (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  number INTEGER NOT NULL CHECK (number >= 1),
  agent_id TEXT REFERENCES agents (id),  -- the gang's leader; NULL for standalone runs
  hosts TEXT NOT NULL,                   -- mpirun -H form, "h1:4,h2:4"
  started_at REAL NOT NULL,
  ended_at REAL,
  outcome TEXT CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'preempted', 'lost')),
  exit_status INTEGER,
  resumed_from_step INTEGER CHECK (resumed_from_step >= 0),  -- NULL = from scratch
  PRIMARY KEY (job_id, number),
  CHECK ((ended_at IS NULL) = (outcome IS NULL))
) STRICT;

-- Append-only: the triggers below refuse UPDATE and DELETE.
CREATE TABLE metrics (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  step INTEGER NOT NULL CHECK (step >= 0),
  name TEXT NOT NULL CHECK (length(name) > 0),
  value REAL,  -- NULL stands for NaN, which SQLite cannot store
  time REAL NOT NULL,
  FOREIGN KEY (job_id, attempt) REFERENCES attempts (job_id, number)
) STRICT;
CREATE INDEX metrics_by_job_step ON metrics (job_id, step);
CREATE TRIGGER metrics_no_update BEFORE UPDATE ON metrics
BEGIN
  SELECT RAISE(ABORT, 'metrics are append-only');
END;
CREATE TRIGGER metrics_no_delete BEFORE DELETE ON metrics
BEGIN
  SELECT RAISE(ABORT, 'metrics are append-only');
END;

CREATE TABLE checkpoints (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  step INTEGER NOT NULL CHECK (step >= 0),
  path TEXT NOT NULL CHECK (length(path) > 0),
  sha256 TEXT NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
  created_at REAL NOT NULL,
  PRIMARY KEY (job_id, step)
) STRICT;

CREATE TABLE results (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  evaluation TEXT NOT NULL CHECK (evaluation IN ('pretrain', 'few_shot', 'fine_tune')),
  dataset TEXT NOT NULL CHECK (length(dataset) > 0),
  shots INTEGER CHECK (shots > 0),
  seed INTEGER,
  metric TEXT NOT NULL CHECK (length(metric) > 0),
  value REAL NOT NULL,
  CHECK ((evaluation = 'few_shot') = (shots IS NOT NULL))
) STRICT;
-- One value per (job, evaluation, dataset, shots, seed, metric); reporting it again replaces it.
CREATE UNIQUE INDEX results_by_job ON results (job_id, evaluation, dataset, ifnull(shots, 0),
                                               ifnull(seed, -1), metric);

CREATE TABLE compute_ledger (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  train_flops REAL NOT NULL CHECK (train_flops >= 0),
  eval_flops REAL NOT NULL CHECK (eval_flops >= 0),
  images_seen INTEGER NOT NULL CHECK (images_seen >= 0),
  device_kind TEXT NOT NULL CHECK (length(device_kind) > 0),
  device_seconds REAL NOT NULL CHECK (device_seconds >= 0),
  wall_seconds REAL NOT NULL CHECK (wall_seconds >= 0),
  PRIMARY KEY (job_id, attempt),
  FOREIGN KEY (job_id, attempt) REFERENCES attempts (job_id, number)
) STRICT;
