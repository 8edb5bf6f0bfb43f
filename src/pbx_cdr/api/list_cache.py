"""List pages kept per process, valid exactly as long as the account's calls have not changed.

A wallboard or a CRM that polls an account's first page every few seconds asks the same question
over and over. Each answer is kept, in this process, under the account's ``data_version`` (read with
the token on every request, so it costs nothing more) and the resolved query (window in epoch
seconds, filters, page). Every write to the account's calls raises the version in the same
transaction (``db/queries/accounts.bump_data_version``), so a page is served from here only while
nothing it shows has changed, whichever process made the change: totals stay exact, and a process
never needs to hear about another's writes. A window that moves with the clock (``to`` = today)
resolves to new bounds each day, hence to a new key.

Bounded by bytes (``PBX_CDR_LIST_CACHE_MB``, 0 turns it off), least recently used first out. Used
from the event loop only (lists are read there on both databases), so it takes no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

# No single page may take more than this share of the cache (a 200-row page is about 110 KB).
_MAX_SHARE = 8


class ListCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, key: Hashable) -> bytes | None:
        if not self.max_bytes:
            return None
        body = self._pages.get(key)
        if body is not None:
            self._pages.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) * _MAX_SHARE > self.max_bytes:
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._pages[key] = body
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= len(dropped)

    @property
    def size(self) -> tuple[int, int]:
        """(pages, bytes) held."""
        return len(self._pages), self._bytes
