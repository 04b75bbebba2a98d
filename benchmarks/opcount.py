"""How many operators a training step runs: a figure the CPU can measure (issue 12).

:func:`count_ops` runs a function once under ``torch.profiler`` and counts, from the
profiler's event tree:

* ``ops``: top-level torch operators, ``aten::`` events with no ``aten::`` ancestor (what
  Python code or the autograd engine called; an op's own sub-ops, e.g. ``aten::addmm``
  inside ``aten::linear``, are not counted again). Backward ops run by the autograd engine
  sit under ``autograd::engine::evaluate_function`` events and count as top-level;
* ``aten_events``: every ``aten::`` event, nested ones included;
* on CUDA, ``cuda_launches`` (``cudaLaunchKernel*`` / ``cuLaunchKernel*`` runtime calls)
  and ``cuda_syncs`` (calls that block the host on the device: stream, device and event
  synchronisation, and the synchronous ``cudaMemcpy*`` / ``cudaMemset*``), and
  ``sync_calls`` (the synchronising calls by name, to find them), and ``gpu_busy``: the
  time the device spent in kernels and copies (their union) over the step's wall time (the
  device synchronised at its end; ``record_function`` ranges, which the profiler also puts on
  the device's timeline, are not activity).

Each op costs a dispatch on the CPU and usually a kernel launch on a GPU, so on a GPU a
small batch's step time follows these counts more than its FLOPs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchCooperativeKernel", "cudaGraphLaunch")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def is_sync(name: str) -> bool:
    """A CUDA runtime call that waits for the device: the synchronise calls, and the
    memcpy/memset calls without ``Async``."""
    if name.startswith(SYNCS):
        return True
    return name.startswith(("cudaMemcpy", "cudaMemset")) and "Async" not in name


def _has_aten_ancestor(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def _tally(events) -> dict:
    ops = aten = launches = syncs = 0
    sync_calls: dict[str, int] = {}
    for e in events:
        name = e.name
        if name.startswith("aten::"):
            aten += 1
            ops += not _has_aten_ancestor(e)
        elif name.startswith(LAUNCHES):
            launches += 1
        elif name.startswith("cuda") and is_sync(name):
            syncs += 1
            sync_calls[name] = sync_calls.get(name, 0) + 1
    return {"ops": ops, "aten_events": aten, "cuda_launches": launches, "cuda_syncs": syncs, "sync_calls": sync_calls}


def busy_us(events) -> float:
    """Microseconds in which the device ran a kernel or a copy: the union of their spans
    (user annotations excluded)."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
                   and not e.name.startswith(("stage::", "ProfilerStep")))
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def count_events(events, region: str | None = None) -> dict:
    """The counts of :func:`count_ops` from a profiler's ``events()``. With ``region``, only
    the events that start inside one of the ranges named ``region*`` (``record_function``),
    on any thread (the autograd engine's CUDA thread runs backward ops on its own), and
    ``by_region``: the counts inside each range name (``region`` stripped)."""
    events = list(events)
    if region is None:
        return _tally(events)
    # the ranges as the host ran them: on CUDA the profiler also puts each range on the device's
    # timeline, where it lasts until its last kernel ends, past the host's synchronisation after it
    spans = [(e.name[len(region):], e.time_range.start, e.time_range.end) for e in events
             if e.name.startswith(region) and e.device_type == DeviceType.CPU]
    inside: dict[str, list] = {name: [] for name, _, _ in spans}
    for e in events:
        if e.name.startswith(region):
            continue
        for name, a, b in spans:
            if a <= e.time_range.start <= b:
                inside[name].append(e)
                break
    counts = _tally([e for found in inside.values() for e in found])
    counts["by_region"] = {name: _tally(found) for name, found in inside.items()}
    return counts


def count_ops(fn: Callable[[], Any], cuda: bool = False, region: str | None = None,
              table_rows: int = 0) -> tuple[dict[str, int], Any]:
    """Run ``fn()`` once under the profiler (CPU activity, and CUDA's when ``cuda``):
    its operator counts (see the module's docstring; the CUDA ones None without ``cuda``)
    and its return value. ``region``: count only inside the ``record_function`` ranges
    whose names start with it (see :func:`count_events`). ``table_rows``: also
    ``counts["table"]``, the profiler's table of that many operators by self time (device
    time on CUDA). On CUDA the device is synchronised first, outside the profile: the
    runtime calls are counted as the host makes them, the kernels need not finish."""
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        result = fn()
        if cuda:
            torch.cuda.synchronize()  # outside the regions: not counted as the step's
        wall_us = (time.perf_counter() - start) * 1e6
    counts = count_events(prof.events(), region)
    if not cuda:
        for c in [counts, *counts.get("by_region", {}).values()]:
            c["cuda_launches"] = c["cuda_syncs"] = c["sync_calls"] = None
    else:
        counts["gpu_busy"] = round(busy_us(prof.events()) / wall_us, 3)
    if table_rows:
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        counts["table"] = prof.key_averages().table(sort_by=key, row_limit=table_rows)
    return counts, result
