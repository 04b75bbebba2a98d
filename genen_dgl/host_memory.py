"""Freed host memory kept for reuse (glibc's malloc), for the tensors every batch makes.

Each batch makes and frees host tensors of a few MiB (a sampled block's entries, the
features it gathers). glibc maps each allocation above its mmap threshold afresh and
unmaps it on free, and trims the heap's free top back to the system, so the next batch
faults the same pages in again (~3.5 µs per 4 KiB page on the 2-core VM of BENCHMARKS.md
section 10, where keeping them made ``DeviceBatches`` 1.6x and ``to_message_block`` 1.1x
faster on a paper-scale batch). Raising both thresholds keeps
that memory in the process for the next batch, as jemalloc or tcmalloc preloaded would,
with nothing to install. The entry points that train call :func:`keep_freed_memory`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit: larger blocks are always mapped


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Serve allocations up to 32 MiB from the heap and keep up to ``trim_threshold`` bytes
    of its free top; whether it applied (False where the C library is not glibc)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    log.debug("host memory: freed blocks kept for reuse: %s", applied)
    return applied
