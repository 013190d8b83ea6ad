"""webapp.memory: model loads take their memory from mmap (returned when freed), requests from the heap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Run in a fresh interpreter: in a long test session the heap holds free chunks of every size,
# and malloc serves a request from one of those before it considers mmap at all.
PROBE = """
import ctypes, ctypes.util, sys
from webapp import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

try:
    mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
except (OSError, AttributeError):
    sys.exit(77)
if memory._mallopt is None:
    sys.exit(77)
mallinfo2.restype = MallInfo2

def mmapped_bytes_for(size):
    before = mallinfo2().hblkhd
    buffer = bytearray(size)  # CPython takes buffers this big straight from malloc
    grown = mallinfo2().hblkhd - before
    del buffer
    return grown

size = 1536 * 1024  # a decoded upload's size class: above the loading threshold, below serving's
with memory.mmapped_allocations():
    loading = mmapped_bytes_for(size)
serving = mmapped_bytes_for(size)
outsized = mmapped_bytes_for(8 * 1024 * 1024)
print(loading, serving, outsized)
"""


def test_model_loads_use_mmap_and_requests_the_heap():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT)
    if done.returncode == 77:
        pytest.skip("not glibc >= 2.33")
    assert done.returncode == 0, done.stderr[-2000:]
    loading, serving, outsized = map(int, done.stdout.split())
    size = 1536 * 1024
    assert loading >= size  # from mmap while models load: freeing it unmaps it
    assert serving == 0  # serving: from the heap, and reused by the next request
    assert outsized >= 8 * 1024 * 1024  # an outsized upload bypasses the heap
