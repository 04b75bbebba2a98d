"""keep_freed_memory: a batch-sized host tensor is served from the heap, and its memory
stays there when freed, for the next batch to reuse (glibc unmaps it otherwise, and the
next batch faults its pages in afresh)."""

import platform
import subprocess
import sys

import pytest

# In a fresh process: glibc's bookkeeping (mallinfo2) around a 16 MiB tensor's life.
ALLOCATE_AND_FREE = """
import ctypes, ctypes.util, sys, torch
from genen_dgl.host_memory import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
info = ctypes.CDLL(ctypes.util.find_library("c")).mallinfo2
info.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = info()
x = torch.ones(2 << 20, dtype=torch.int64)
during = info()
del x
after = info()
print(during.hblkhd - before.hblkhd, during.arena - before.arena, during.arena - after.arena)
"""


def life_of_a_tensor(mode: str) -> tuple[int, ...]:
    """(bytes mapped for it, bytes the heap grew by, bytes the heap gave back when it was freed)."""
    out = subprocess.run([sys.executable, "-c", ALLOCATE_AND_FREE, mode], capture_output=True, text=True, check=True)
    return tuple(int(v) for v in out.stdout.split())


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_batch_sized_tensor_lives_in_the_heap_and_stays_there():
    mapped, grown, returned = life_of_a_tensor("default")
    assert mapped >= 16 << 20 and grown < 1 << 20  # glibc maps it on its own, unmapped when freed
    mapped, grown, returned = life_of_a_tensor("keep")
    assert mapped == 0 and grown >= 16 << 20 and returned == 0
