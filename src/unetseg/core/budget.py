"""The memory budget every stage checks its estimates against, before work starts."""

from __future__ import annotations

import os
import resource

BUDGET_SHARE = 0.5  # of the machine's memory (or of the address-space limit), unless --max-memory says


def memory_budget(max_memory_gb: float | None = None) -> int:
    """Bytes a forward pass may take: ``max_memory_gb``, else half the machine's memory, and never more than
    half a memory limit the process runs under (``ulimit -v`` or ``-d``)."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget = int(total * BUDGET_SHARE)
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft, _ = resource.getrlimit(limit)
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, int(soft * BUDGET_SHARE))
    return budget


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GB"
