"""webapp.memory: model loads take their memory from mmap (returned when freed), requests from the heap."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from webapp import memory


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mmapped_bytes_for(size: int) -> int:
    """How much more memory malloc holds in mmapped blocks while a ``size``-byte buffer lives."""
    try:
        mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("not glibc >= 2.33")
    mallinfo2.restype = MallInfo2
    before = mallinfo2().hblkhd
    buffer = bytearray(size)  # CPython takes buffers this big straight from malloc
    grown = mallinfo2().hblkhd - before
    del buffer
    return grown


def test_model_loads_use_mmap_and_requests_the_heap():
    if memory._mallopt is None:
        pytest.skip("no mallopt here")
    size = 1536 * 1024  # a decoded upload's size class: above the loading threshold, below serving's
    with memory.mmapped_allocations():
        assert mmapped_bytes_for(size) >= size  # from mmap: freeing it unmaps it
    assert mmapped_bytes_for(size) == 0  # serving: from the heap, and reused by the next request
    assert mmapped_bytes_for(8 * 1024 * 1024) >= 8 * 1024 * 1024  # an outsized upload bypasses the heap
