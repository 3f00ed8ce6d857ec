"""pgcue workers: the runtime that claims and runs jobs, and the job types."""
