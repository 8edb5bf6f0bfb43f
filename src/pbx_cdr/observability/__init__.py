"""Operations: structured logs with request ids, Prometheus metrics, and what must never be logged."""
