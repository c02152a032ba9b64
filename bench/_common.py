"""Helpers shared by the bench scripts, numpy-only so that peer scripts running in another
virtual environment (bench/peer_pylate.py) can import them too."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss, not inherited from the parent across fork/exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Rows ``offsets[i]:offsets[i+1]`` of ``flat``, one array per item."""
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
