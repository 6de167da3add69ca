"""Free space under the spool directory, for `/__heartbeat__` (`[spool] min_free_disk_mb`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path`."""
    # The spool directory may not exist yet: ask its nearest existing ancestor.
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskCheck:
    """Is there at least `min_free_mb` free under `path`?"""

    def __init__(self, path: str | Path, min_free_mb: int) -> None:
        self.path = Path(path)
        self.min_free = min_free_mb << 20

    async def healthy(self) -> bool:
        if not self.min_free:
            return True
        try:
            free = await asyncio.to_thread(free_bytes, self.path)
        except OSError:
            return False
        return free >= self.min_free
