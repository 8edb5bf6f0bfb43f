"""Per-token rate limits: a sliding-window counter kept in the database, so every process agrees.

The estimate for "the last minute" is the current window's hits plus the previous window's hits
weighted by how much of it still lies inside the last minute. Refused requests are not counted, so
a client that backs off for ``Retry-After`` seconds gets through again.

Limits are per token; the number comes from the token's account (``rate_limit_per_minute``, 0 = off).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import ratelimit as queries
from pbx_cdr.errors import TooManyRequests
from pbx_cdr.observability import metrics

WINDOW = 60  # seconds: limits are configured per minute


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one request against its token's limit (``limit`` 0: no limit applies)."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int = 0

    def headers(self) -> dict[str, str]:
        if self.limit <= 0:
            return {}
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


UNLIMITED = RateDecision(allowed=True, limit=0, remaining=0)


def carried(previous_hits: int, elapsed: float, window: int = WINDOW) -> int:
    """The previous window's hits that still count, ``elapsed`` seconds into the current window."""
    share = max(0.0, (window - elapsed) / window)
    return math.ceil(previous_hits * share - 1e-9)


def room(limit: int, previous_hits: int, elapsed: float, window: int = WINDOW) -> int:
    """How many hits the current window may hold at this moment."""
    return limit - carried(previous_hits, elapsed, window)


def retry_after(
    limit: int, previous_hits: int, current_hits: int, elapsed: float, window: int = WINDOW
) -> int:
    """Whole seconds until one more request fits, for a request refused ``elapsed`` into its window."""
    spare = limit - current_hits - 1  # what the previous window may still carry for one more hit to fit
    if spare >= 0:
        if previous_hits <= spare:
            return 1
        # previous * (window - elapsed - t) / window <= spare
        wait = window - elapsed - spare * window / previous_hits
        if wait <= window - elapsed:
            return max(1, math.ceil(wait - 1e-9))
    # Only in the next window: this window's hits become the carried ones.
    until_next = window - elapsed
    if current_hits <= limit - 1:
        return max(1, math.ceil(until_next - 1e-9))
    into_next = window - (limit - 1) * window / current_hits
    return max(1, math.ceil(until_next + into_next - 1e-9))


class RateLimiter:
    """Counts hits per token in the shared database; refusals never take the write lock."""

    def __init__(self, engine: Engine, window: int = WINDOW) -> None:
        self.engine = engine
        self.window = window
        self._pruned_window = 0
        self._prune_lock = threading.Lock()

    def hit(self, token_id: int, limit: int, now: float) -> RateDecision:
        if limit <= 0:
            return UNLIMITED
        window = self.window
        current = int(now // window) * window
        previous = current - window
        elapsed = now - current
        with db.read(self.engine) as conn:
            prev_hits, cur_hits = queries.window_hits(conn, token_id, previous, current)
        allowed_hits = room(limit, prev_hits, elapsed, window)
        if cur_hits >= allowed_hits:
            return self._refused(limit, prev_hits, cur_hits, elapsed)
        with db.write(self.engine, durable=False) as conn:
            taken = queries.take(conn, token_id, current, allowed_hits)
            if taken == 1:  # the token's first hit of this window: its older windows are done with
                queries.prune_token(conn, token_id, previous)
        if taken is None:  # another process took the last slot between our read and our write
            return self._refused(limit, prev_hits, allowed_hits, elapsed)
        self._prune_everything_old(current)
        return RateDecision(allowed=True, limit=limit, remaining=max(0, allowed_hits - taken))

    def _refused(self, limit: int, prev_hits: int, cur_hits: int, elapsed: float) -> RateDecision:
        wait = retry_after(limit, prev_hits, cur_hits, elapsed, self.window)
        metrics.count_rate_limited()
        return RateDecision(allowed=False, limit=limit, remaining=0, retry_after=wait)

    def _prune_everything_old(self, current: int) -> None:
        """At most once a window per process: drop the windows of tokens that went quiet."""
        with self._prune_lock:
            if self._pruned_window >= current:
                return
            self._pruned_window = current
        with db.write(self.engine, durable=False) as conn:
            queries.prune(conn, current - self.window)


def enforce(decision: RateDecision) -> None:
    """429 with ``Retry-After`` and the ``X-RateLimit-*`` headers when the request is refused."""
    if not decision.allowed:
        raise TooManyRequests(headers=decision.headers())
