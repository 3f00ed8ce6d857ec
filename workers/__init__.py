"""pgcue's workers: the runtime that claims and runs jobs (runtime/), and the job types (types/)."""
