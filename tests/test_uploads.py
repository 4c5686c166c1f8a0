"""launcher.uploads: chunks in order into a spool folder of their own, discarded with a reason when refused."""
import pytest

from launcher.uploads import IDLE_S, UploadError, Uploads, spool_name


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_chunks_in_order_make_the_file_and_a_repeated_last_chunk_is_taken_once(tmp_path):
    uploads = Uploads(tmp_path, max_bytes=100)
    upload = uploads.start("run.mp4", 10)
    assert uploads.add(upload.id, 0, b"01234") == 5
    assert uploads.add(upload.id, 0, b"01234") == 5  # a retry after a lost reply
    assert uploads.add(upload.id, 5, b"56789") == 10
    taken = uploads.take(upload.id)
    assert taken.path.read_bytes() == b"0123456789" and taken.path.parent.parent == tmp_path
    uploads.hold("job1", taken)
    uploads.tidy({"other"})
    assert taken.path.exists()
    uploads.tidy({"job1"})
    assert not taken.folder.exists()


def test_an_idle_upload_is_discarded_and_says_so_afterwards(tmp_path):
    clock = Clock()
    uploads = Uploads(tmp_path, max_bytes=100, clock=clock)
    upload = uploads.start("run.mp4", 10)
    uploads.add(upload.id, 0, b"0123")
    clock.now = IDLE_S + 1
    uploads.tidy(set())
    assert not upload.folder.exists()
    with pytest.raises(UploadError, match=f"no upload {upload.id} in progress .* no chunk for {IDLE_S:g} s"):
        uploads.add(upload.id, 4, b"4567")


def test_refused_sizes(tmp_path):
    uploads = Uploads(tmp_path, max_bytes=100)
    with pytest.raises(UploadError, match="exceeds the limit of 100 bytes"):
        uploads.start("big.mp4", 101)
    with pytest.raises(UploadError, match="at least 1 byte"):
        uploads.start("empty.mp4", 0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("given, safe", [("C:\\clips\\my run.mp4", "my_run.mp4"), ("../../etc/passwd", "passwd"),
                                         ("..", "upload"), ("", "upload"), (".hidden.mov", "hidden.mov")])
def test_spooled_files_are_named_safely(given, safe):
    assert spool_name(given) == safe
