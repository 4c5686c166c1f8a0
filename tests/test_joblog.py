"""Per-job result logs: retention, and a job whose track stage stopped mid-way."""
import numpy as np

from bus import messages
from bus.joblog import JobLogs


def published(job: str, frames: int) -> list[dict]:
    start = messages.job_start(job, "clip.mp4", 30.0, 64, 48, frames)
    return [start, *(messages.frame(job, i, i * 33.3, []) for i in range(frames))]


def write(logs: JobLogs, job: str, stream: list[dict]) -> None:
    log = logs.open(job)
    for message in stream:
        log.write(message)
    log.close()


def test_a_log_cut_short_is_continued_by_the_next_stage(tmp_path):
    logs = JobLogs(tmp_path)
    write(logs, "j", published("j", 5))
    with open(logs.path("j"), "ab") as file:  # the killed stage was half-way through a record
        file.write(b"\x93\xc4\xff")
    write(logs, "j", [messages.job_end("j", 5, "stage stopped: track (exit -9)")])
    kinds = [(m["type"], m.get("index")) for m in logs.messages("j")]
    assert kinds == [("job_start", None), *(("frame", i) for i in range(5)), ("job_end", None)]
    found, next_index, done = logs.replay("j", 2, 100)
    assert [m.get("index") for m in found] == [None, 2, 3, 4, None] and (next_index, done) == (5, True)


def test_a_finished_log_of_the_same_id_starts_afresh(tmp_path):
    logs = JobLogs(tmp_path)
    write(logs, "j", [*published("j", 5), messages.job_end("j", 5)])
    write(logs, "j", published("j", 2))
    assert [m.get("index") for m in logs.messages("j")] == [None, 0, 1]


def test_only_the_newest_logs_are_kept(tmp_path):
    logs = JobLogs(tmp_path, keep=3)
    for job in "abcde":
        write(logs, job, [*published(job, 1), messages.job_end(job, 1)])
    assert sorted(p.stem for p in tmp_path.glob("*.log")) == ["c", "d", "e"]
    assert np.all([logs.replay(job, 0, 10)[2] for job in "cde"])
