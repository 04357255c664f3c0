"""The collection API function: one handler serves every configured collection (reads, writes,
queries, the per-instance cache and circuit breaker)."""
