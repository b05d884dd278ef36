"""The CPU stages' process priority: decoding and probing yield the CPU to the model."""
from __future__ import annotations

import os

# Decoding yields the CPU to the model where they share a node: the model's threads wait for
# each other, so one preempted thread stalls them all, while decoding only has to keep up.
DECODE_NICENESS = 10


def lower_priority() -> None:
    """Lower this process to DECODE_NICENESS (before a decode worker starts: it inherits it)."""
    if hasattr(os, "setpriority"):  # absolute, so a reused Ray worker does not sink further
        os.setpriority(os.PRIO_PROCESS, 0, max(DECODE_NICENESS, os.getpriority(os.PRIO_PROCESS, 0)))
