"""The HTTP service (Litestar)."""
