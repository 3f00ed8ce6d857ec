"""Job types shipped with pgcue, one module each."""
