"""Token lookups kept in a server process while PostgreSQL's notifications say they still hold.

On PostgreSQL every request's token lookup was a round trip: about 0.1 ms of the server's CPU and
0.1 ms of PostgreSQL's, a fifth of a list read from the database. Here a lookup's answer (the
token and its account) is kept for up to ``token_cache_seconds``, and dropped, with every other,
as soon as the process hears of a change to any token or account (``db/auth_changes.py``): a
revoked token is refused by every process as soon as PostgreSQL's notification reaches it,
normally within a millisecond of the commit. The time limit only bounds a notification that never
arrived (a connection that died silently): kept answers are used only while the process is
listening, and all are dropped whenever it stops.

An answer read before a change but kept after the process heard of it would outlive the change:
each answer is kept only if no change was heard since its lookup began (``generation``). Unknown
tokens are never kept; neither is an account's ``data_version`` trusted from here (the list cache
reads it fresh: ``api/routes/cdr.py``). SQLite needs none of this: its lookup is a few
microseconds in process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.db.queries.tokens import TokenRow

Found = tuple[TokenRow, Account]
MAX_ENTRIES = 10_000  # tokens kept per process; the oldest kept goes first


class TokenCache:
    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.generation = 0  # raised by every change heard, and when listening starts or stops
        self.listening = False
        self._kept: dict[str, tuple[float, Found]] = {}

    def get(self, token_hash: str) -> Found | None:
        if not self.listening:
            return None
        kept = self._kept.get(token_hash)
        if kept is None:
            return None
        if self.clock() >= kept[0]:
            del self._kept[token_hash]
            return None
        return kept[1]

    def put(self, token_hash: str, found: Found, generation: int) -> None:
        """Keep ``found``, looked up since ``generation``, unless a change was heard meanwhile."""
        if not self.listening or generation != self.generation:
            return
        if len(self._kept) >= MAX_ENTRIES and token_hash not in self._kept:
            del self._kept[next(iter(self._kept))]
        self._kept[token_hash] = (self.clock() + self.ttl_s, found)

    def forget(self, token_hash: str) -> None:
        self._kept.pop(token_hash, None)

    def changed(self) -> None:
        self.generation += 1
        self._kept.clear()

    def set_listening(self, listening: bool) -> None:
        self.listening = listening
        self.changed()

    def __contains__(self, token_hash: object) -> bool:
        return token_hash in self._kept

    def __len__(self) -> int:
        return len(self._kept)
