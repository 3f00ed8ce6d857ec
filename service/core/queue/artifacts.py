"""What the database knows of artifacts: which jobs have a folder (so that deleting the job
deletes the folder), and how many bytes each channel keeps (its quota)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pgcue.core.errors import QuotaExceeded

if TYPE_CHECKING:
    from pgcue.core.queue import Queue


class Artifacts:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def folder_started(self, job_id: uuid.UUID, fence: int) -> None:
        """Note, before the first file is written, that the job has an artifact folder:
        from then on, deleting the job queues the folder for removal."""
        await self.q.sql.execute(self.q.pool, "mark_artifact_folder", job_id, fence)

    async def reserve(self, job_id: uuid.UUID, fence: int, delta: int, quota: int) -> None:
        """Count `delta` bytes more (or fewer) of the running job's artifacts against its
        channel; QuotaExceeded (nothing counted) when the channel would pass `quota` bytes
        (0: no limit)."""
        row = await self.q.sql.fetchrow(self.q.pool, "reserve_artifact_bytes", job_id, fence, delta, quota or None)
        if row is None:
            raise QuotaExceeded("the job is no longer held by this worker")
        if not row["reserved"]:
            mib = quota / 1_048_576
            raise QuotaExceeded(
                f"channel {row['channel_id']} keeps {row['used'] / 1_048_576:.1f} MiB of artifacts; this file "
                f"({delta / 1_048_576:.1f} MiB) would pass its quota of {mib:.0f} MiB: delete or clear finished jobs "
                "to make room"
            )

    async def released(self, job_id: uuid.UUID, fence: int) -> None:
        """The running job's folder was removed (its attempt failed for good): its bytes
        no longer count against the channel."""
        await self.q.sql.execute(self.q.pool, "release_artifact_bytes", job_id, fence)

    async def channel_usage(self, channel_id: str) -> int:
        row = await self.q.sql.fetchrow(self.q.pool, "channel_artifact_bytes", channel_id)
        return int(row["bytes"]) if row else 0
