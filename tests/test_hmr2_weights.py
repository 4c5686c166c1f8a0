"""Finding the HMR 2.0 checkpoint, the report when it is missing, and the resumable download."""
import http.server
import io
import re
import tarfile
import threading
from pathlib import Path

import pytest

from detectors import download as downloads
from detectors.hmr2 import weights
from detectors.hmr2.weights import CHECKPOINT_IN_CACHE


def put_checkpoint(cache: Path) -> Path:
    path = cache / CHECKPOINT_IN_CACHE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"ckpt")
    return path


def test_search_order_and_report(tmp_path):
    option, env, home, profile = (tmp_path / name for name in ("option", "env", "home", "profile"))
    wsl = tmp_path / "mnt" / "c" / "Users"
    environ = {"POSEBUS_HMR2_CACHE": str(env), "HOME": str(home), "USERPROFILE": str(profile)}
    wsl_pattern = str(wsl / "*")
    (wsl / "alice").mkdir(parents=True)

    found, searched = weights.find_checkpoint(cache_dir=option, environ=environ, wsl_homes=wsl_pattern)
    assert found is None
    assert searched == [option / CHECKPOINT_IN_CACHE, env / CHECKPOINT_IN_CACHE,
                        home / ".cache" / "4DHumans" / CHECKPOINT_IN_CACHE,
                        wsl / "alice" / ".cache" / "4DHumans" / CHECKPOINT_IN_CACHE,
                        profile / ".cache" / "4DHumans" / CHECKPOINT_IN_CACHE]
    report = weights.missing_checkpoint_report(searched)
    assert all(str(path) in report for path in searched)
    assert weights.DEFAULT_URL in report and CHECKPOINT_IN_CACHE.as_posix() in report

    in_wsl = put_checkpoint(wsl / "alice" / ".cache" / "4DHumans")
    assert weights.find_checkpoint(environ=environ, wsl_homes=wsl_pattern)[0] == in_wsl
    in_env = put_checkpoint(env)
    assert weights.find_checkpoint(environ=environ, wsl_homes=wsl_pattern)[0] == in_env
    assert weights.cache_dir_of(in_env) == env.resolve()
    assert weights.cache_dir_of(tmp_path / "model.ckpt") is None


def test_explicit_path_is_the_only_place_looked(tmp_path):
    assert weights.find_checkpoint(tmp_path / "nope.ckpt", environ={}) == (None, [tmp_path / "nope.ckpt"])
    (tmp_path / "x.ckpt").write_bytes(b"")
    assert weights.find_checkpoint(tmp_path / "x.ckpt", environ={})[0] == tmp_path / "x.ckpt"


def make_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        payload = bytes(range(256)) * 2000
        member = tarfile.TarInfo(CHECKPOINT_IN_CACHE.as_posix())
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.fixture
def server():
    """Loopback server for one file; honours 'Range: bytes=N-'; can cut the next reply short."""
    state = {"body": make_tarball(), "cut_next_at": None, "ranges": [], "honour_range": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = state["body"]
            requested = self.headers.get("Range")
            state["ranges"].append(requested)
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1)) if requested else 0
            if requested and state["honour_range"] and start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            if requested and state["honour_range"]:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                start = 0
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            end = len(body) if state["cut_next_at"] is None else state["cut_next_at"]
            state["cut_next_at"] = None
            self.wfile.write(body[start:end])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/hmr2_data.tar.gz"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_interrupted_download_is_resumed_and_size_checked(server, tmp_path):
    dest = tmp_path / "hmr2_data.tar.gz"
    server["cut_next_at"] = 1000
    with pytest.raises(downloads.IncompleteDownload, match="run again to resume"):
        downloads.download(server["url"], dest)
    assert not dest.exists()
    kept = (tmp_path / "hmr2_data.tar.gz.part").stat().st_size
    assert 0 < kept <= 1000

    assert downloads.download(server["url"], dest) == dest
    assert server["ranges"] == [None, f"bytes={kept}-"]
    assert dest.read_bytes() == server["body"]
    assert not (tmp_path / "hmr2_data.tar.gz.part").exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "hmr2_data.tar.gz.part").write_bytes(b"stale bytes")
    server["honour_range"] = False
    dest = downloads.download(server["url"], tmp_path / "hmr2_data.tar.gz")
    assert dest.read_bytes() == server["body"]


def test_fetch_resumes_a_partial_tarball_and_unpacks_it(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "hmr2_data.tar.gz.part").write_bytes(server["body"][:777])
    checkpoint = weights.fetch_checkpoint(cache, url=server["url"])
    assert server["ranges"] == ["bytes=777-"]
    assert checkpoint == cache / CHECKPOINT_IN_CACHE
    assert checkpoint.read_bytes() == bytes(range(256)) * 2000
    assert weights.find_checkpoint(cache_dir=cache, environ={})[0] == checkpoint


def test_fetch_completes_a_truncated_tarball_and_keeps_a_whole_one(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    tarball = cache / "hmr2_data.tar.gz"
    tarball.write_bytes(server["body"][:500])  # as upstream's downloader may leave it
    weights.fetch_checkpoint(cache, url=server["url"])
    assert tarball.read_bytes() == server["body"]
    weights.fetch_checkpoint(cache, url=server["url"])
    assert server["ranges"] == ["bytes=500-", f"bytes={len(server['body'])}-"]
    assert tarball.read_bytes() == server["body"]
