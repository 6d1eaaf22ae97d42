"""What the tests ask the kernel about the processes a run started."""

from __future__ import annotations


def running(pid: int) -> bool:
    """True while pid exists and is not a zombie (a reaper may be slow to collect it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
