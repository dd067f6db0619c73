"""Keep glibc from handing every batch-sized buffer back to the kernel.

By default glibc serves allocations over 128 KiB with fresh ``mmap``s and unmaps them on free, so
every 256 KiB batch (and gRPC's copy of it) pays a page fault per 4 KiB page; on small VMs a fault
costs microseconds and these faults were most of the server's time per batch. Raising the mmap and
trim thresholds lets freed buffers be reused from the heap instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

# mallopt parameter numbers from <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20

log = logging.getLogger(__name__)


def keep_freed_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds; False (and no change) where libc is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("mallopt is not available (%s); malloc left as it is", name)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
