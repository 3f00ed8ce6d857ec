"""The worker runtime: claims jobs, runs their handlers, records their outcomes."""
