"""The history link (ROUTER): a job's published messages from any frame index, read from the job logs.

A backend that subscribed late, restarted or fell behind asks here
(``replay_request``) and gets the job's logged messages, then ``replay_end``.
"""
from __future__ import annotations

import zmq

from bus import codec, messages
from bus.joblog import JobLogs


def serve_replay(sock: zmq.Socket, job_logs: JobLogs) -> None:
    """Answer one replay request: the job's logged messages from a frame index, then replay_end."""
    identity, *parts = sock.recv_multipart(copy=False)
    try:
        request = messages.validate_replay_request(codec.decode(parts))
        found, next_index, done = job_logs.replay(request["job"], request["from"], request["count"])
        end = messages.replay_end(request["job"], next_index, done)
    except ValueError as exc:
        found, end = [], messages.replay_end("invalid", 0, True, str(exc))
    for message in [*found, end]:
        sock.send_multipart([identity, messages.topic(message), *codec.encode(message)], copy=False)
