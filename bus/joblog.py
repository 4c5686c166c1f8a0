"""Per-job result logs on disk, and reading them back for replay.

Every public message the track stage publishes is also appended to
``<folder>/<job>.log`` (a ``bus.log`` message log, flushed per message), so a
backend that subscribed late, restarted or fell behind can ask for a job's
messages from any frame index (``replay``), then carry on live: the ZeroMQ
guide's Clone pattern. Retention keeps the newest ``keep`` logs.
"""
from __future__ import annotations

from pathlib import Path

from bus.log import MessageLog, read

MAX_REPLAY_FRAMES = 1000  # per request: the client asks again for more (credit-based flow)


class JobLogs:
    def __init__(self, folder: Path, keep: int = 50):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def path(self, job: str) -> Path:
        return self.folder / f"{job}.log"

    def open(self, job: str) -> MessageLog:
        """The job's log, after removing the oldest beyond the retention count.

        A log left without a job_end (the track stage publishing the job stopped mid-way; its
        successor publishes the job's end) is continued, so a replay still has the frames published
        before; a log with a job_end is a finished job of the same id and starts afresh.
        """
        earlier = self._cut_short(job)
        logs = sorted(self.folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[: max(0, len(logs) - self.keep + 1)]:
            old.unlink(missing_ok=True)
        log = MessageLog(self.path(job), flush=True)
        for message in earlier:  # rewritten, not appended: a killed writer may have left half a record
            log.write(message)
        return log

    def _cut_short(self, job: str) -> list[dict]:
        """The messages of the job's log if it has no job_end, else []."""
        if not self.path(job).exists():
            return []
        found = []
        try:
            for message in read(self.path(job)):
                if message["type"] == "job_end":
                    return []
                found.append(message)
        except ValueError:  # a damaged record: keep what came before it
            pass
        return found

    def messages(self, job: str) -> list[dict]:
        return list(read(self.path(job)))

    def replay(self, job: str, first: int, count: int) -> tuple[list[dict], int, bool]:
        """A job's messages from frame ``first``: (messages, next frame index, whether the job has ended).

        Gives job_start, then frames ``first``… (at most ``count``) with the
        ``track_event`` messages published among them, then job_end once reached.
        """
        if not self.path(job).exists():
            return [], first, False
        count = min(count, MAX_REPLAY_FRAMES)
        selected, next_index = [], first
        for message in read(self.path(job)):
            kind = message["type"]
            if kind == "job_start":
                selected.append(message)
            elif kind == "job_end":
                selected.append(message)
                return selected, next_index, True
            elif next_index - first >= count:
                break
            elif kind == "frame" and message["index"] >= first:
                selected.append(message)
                next_index = message["index"] + 1
            elif kind == "track_event" and next_index > first:
                selected.append(message)  # track_event messages published among the replayed frames
        return selected, next_index, False
