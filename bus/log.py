"""Message logs: a bus stream saved to a file, exactly as it travelled.

Each record is one message's ZeroMQ parts (``[payload, *buffers]``, as made by
``bus.codec.encode``), written as one msgpack array of ``bin`` parts; a log is
those records back to back. Reading decodes and validates every message, so a
log is as safe to replay as the live socket.

    python -m bus.log DIR/detections.log                     # one line per message
    python -m bus.log DIR/detections.log --drop-people 10:30 -o edited.log
"""
from __future__ import annotations

import argparse
from collections.abc import Container, Iterator
from pathlib import Path

import msgpack

from bus import codec, messages


class MessageLog:
    """Appends messages to a log file."""

    def __init__(self, path: str | Path, flush: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._flush = flush  # for logs read while they are written

    def write(self, message: dict) -> None:
        parts = [bytes(part) for part in codec.encode(message)]
        self._file.write(msgpack.packb(parts, use_bin_type=True))
        if self._flush:
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def read(path: str | Path, expected: tuple[str, ...] | None = None) -> Iterator[dict]:
    """The messages of a log, decoded and validated, in order."""
    with open(path, "rb") as file:
        for parts in msgpack.Unpacker(file, raw=False, max_buffer_size=codec.MAX_MESSAGE_BYTES):
            if not isinstance(parts, list):
                raise codec.CodecError(f"{path}: a record is not a list of parts")
            yield messages.validate(codec.decode(parts), expected)


def write_all(path: str | Path, stream) -> Path:
    log = MessageLog(path)
    for message in stream:
        log.write(message)
    log.close()
    return log.path


def drop_people(stream, frames: Container[int]) -> Iterator[dict]:
    """Detections with nobody found on the frames whose index is in ``frames`` (how tracker gaps are reproduced)."""
    for message in stream:
        if message["type"] == "detections" and message["index"] in frames:
            message = {**message, "people": []}
        yield message


def main(argv: list[str] | None = None) -> None:
    from bus.tap import summary

    parser = argparse.ArgumentParser(prog="python -m bus.log", description=__doc__.split("\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--drop-people", metavar="FIRST:STOP", help="clear the detections of these frames")
    parser.add_argument("-o", "--output", type=Path, help="write the (edited) log here instead of printing")
    args = parser.parse_args(argv)
    stream = read(args.log)
    if args.drop_people:
        first, stop = (int(n) for n in args.drop_people.split(":"))
        stream = drop_people(stream, range(first, stop))
    if args.output:
        write_all(args.output, stream)
    else:
        for message in stream:
            print(summary(message))


if __name__ == "__main__":
    main()
