"""glibc malloc settings for web workers: model memory from mmap, request memory from the heap.

A retired model version must give its memory back (a web dyno's worker has 200 MB), which
glibc does for blocks it got from mmap but not, in practice, for a fragmented heap. Yet a
request allocates and frees a few large buffers (the decoded canvas, zlib's state for the
preview), and from mmap each costs a system call and a page fault per 4 KB touched, which a
process-wide low mmap threshold would pay on every prediction. So the threshold is low only
while model versions load (:func:`mmapped_allocations`) and high otherwise.

Only glibc has ``mallopt``; elsewhere these are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# While models load: every block of a session's weights from mmap, so it can be returned.
LOADING_MMAP_THRESHOLD = 128 * 1024
# While serving: only an outsized upload's buffers (the pixel cap allows 16 MB of RGBA) bypass
# the heap, and the heap keeps up to TRIM of free memory for the next requests.
SERVING_MMAP_THRESHOLD = 2 * 1024 * 1024
SERVING_TRIM_THRESHOLD = 4 * 1024 * 1024

_lock = threading.Lock()


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None, None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return mallopt, malloc_trim


_mallopt, _malloc_trim = _load_libc()


def _set(option: int, value: int) -> None:
    if _mallopt is not None:
        _mallopt(option, value)


def serving_mode() -> None:
    """Large request buffers from the heap, kept for reuse."""
    _set(M_MMAP_THRESHOLD, SERVING_MMAP_THRESHOLD)
    _set(M_TRIM_THRESHOLD, SERVING_TRIM_THRESHOLD)


def trim() -> None:
    """Give the heap's free pages back to the system (after a model swap freed the old ones)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


@contextmanager
def mmapped_allocations():
    """Allocations of 128 KB or more made inside come from mmap, so freeing them returns the memory.

    malloc takes mmap only when its heap cannot serve a request, so the heap's free memory is
    handed back first (and again at the end, for what a swap freed). Process-wide while it
    lasts (a model load, ~0.1 s): requests answered meanwhile only run a little slower.
    Loads are serialised, so one never ends another's window early.
    """
    with _lock:
        trim()
        _set(M_MMAP_THRESHOLD, LOADING_MMAP_THRESHOLD)
        try:
            yield
        finally:
            serving_mode()
            trim()
