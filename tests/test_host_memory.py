"""keep_freed_memory: a batch's host tensors reuse the pages the previous batch freed."""

import platform
import subprocess
import sys

import pytest

# Converts the same sampled blocks again and again and prints the page faults of the
# repeats: each repeat frees and makes tensors of the same sizes, MiB each.
CONVERT_AGAIN = """
import resource, sys, numpy as np, torch
from genen_dgl.dataloading import NeighborBatches
from genen_dgl.dgl_compat import dgl
from genen_dgl.host_memory import keep_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
g = torch.Generator().manual_seed(0)
n, m = 20000, 1_000_000
graph = dgl.heterograph({("gene", "interacts", "gene"): (torch.randint(0, n, (m,), generator=g),
                                                          torch.randint(0, n, (m,), generator=g))})
batches = NeighborBatches(graph, np.arange(n), [10, 10], 2048, {})
sets = [batches.sample_blocks(torch.randperm(n, generator=g)[:2048]) for _ in range(4)]
for s in sets:
    batches.convert(*s)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    for s in sets:
        batches.convert(*s)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CONVERT_AGAIN, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_repeated_batches_fault_in_far_fewer_pages():
    default, kept = faults("default"), faults("keep")
    assert default > 1000  # the test can fail: glibc's defaults give pages back between batches
    assert kept * 4 < default, (kept, default)

