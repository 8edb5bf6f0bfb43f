"""Server processes fix glibc's mmap threshold (``pbx_cdr/memory.py``)."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from pbx_cdr import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_threshold_is_set_on_glibc() -> None:
    assert memory.fix_mmap_threshold() is True
    assert memory.fix_mmap_threshold(128 * 1024) is True  # and may be set again


def test_without_a_c_library_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda _name: None)
    assert memory.fix_mmap_threshold() is False


def test_without_mallopt_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        def __init__(self, _name: str) -> None:
            pass

    monkeypatch.setattr(memory.ctypes, "CDLL", NoMallopt)
    assert memory.fix_mmap_threshold() is False
