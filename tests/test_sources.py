import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from video import sources
from video.sources import SourceError, fit_within, fitted_size, is_live, natural_key, open_source, to_bgr8

from clips import mjpeg_stream, portrait_copy, write_clip, write_vfr_mkv
from conftest import VIDEO, free_port


def test_video_file_frames_are_contiguous_with_timestamps():
    source = open_source(str(VIDEO))
    assert (source.info.width, source.info.height, source.info.frame_count) == (1920, 1088, 180)
    frames = [(i, pts) for i, pts, _ in source]
    assert [i for i, _ in frames] == list(range(180))
    assert frames[1][1] == pytest.approx(1000 / 30, abs=0.5)
    assert all(b[1] > a[1] for a, b in zip(frames, frames[1:]))


def test_variable_frame_rate_keeps_the_container_timestamps(tmp_path):
    pts = [0, 40, 50, 150, 160, 300, 333, 1000]  # 25 fps, 100 fps, a 0.7 s pause...
    images = [np.full((48, 64, 3), 25 * i, np.uint8) for i in range(len(pts))]
    frames = list(open_source(str(write_vfr_mkv(tmp_path / "vfr.mkv", images, pts))))
    assert [f[0] for f in frames] == list(range(len(pts)))
    assert [f[1] for f in frames] == pts  # not index / fps: the gaps are kept
    assert [round(f[2][20, 30, 0] / 25) for f in frames] == list(range(len(pts)))  # each frame once, in order


def test_a_portrait_phone_video_is_decoded_upright_at_its_displayed_size(tmp_path):
    source = open_source(str(portrait_copy(VIDEO, tmp_path / "portrait.mp4")))
    _, _, upright = next(iter(source))
    assert (source.info.width, source.info.height) == (upright.shape[1], upright.shape[0]) == (1088, 1920)
    _, _, landscape = next(iter(open_source(str(VIDEO))))
    assert np.abs(upright.astype(int) - cv2.rotate(landscape, cv2.ROTATE_90_CLOCKWISE)).mean() < 1


def test_natural_order_in_folders():
    names = [Path(n) for n in ("frame-10.png", "frame-2.png", "frame-1.png")]
    assert [p.name for p in sorted(names, key=natural_key)] == ["frame-1.png", "frame-2.png", "frame-10.png"]


def test_folder_skips_junk_and_converts_every_image_kind(tmp_path):
    cv2.imwrite(str(tmp_path / "f10.png"), np.full((8, 10, 4), 200, np.uint8))  # BGRA
    cv2.imwrite(str(tmp_path / "f2.png"), np.full((8, 10), 100, np.uint8))  # grayscale
    cv2.imwrite(str(tmp_path / "f3.png"), np.full((8, 10, 3), 60000, np.uint16))  # 16-bit
    (tmp_path / "notes.txt").write_text("junk")
    source = open_source(str(tmp_path), fps=25)
    frames = list(source)
    assert [f[0] for f in frames] == [0, 1, 2]
    assert [f[1] for f in frames] == [0, 40, 80]
    assert all(f[2].shape == (8, 10, 3) and f[2].dtype == np.uint8 for f in frames)
    assert frames[0][2][0, 0, 0] == 100 and frames[2][2][0, 0, 0] == 200  # f2, f3, f10


@pytest.mark.parametrize("size, fitted", [
    ((7680, 4320), (3840, 2160)),  # 8K landscape
    ((4320, 7680), (2160, 3840)),  # 8K portrait
    ((3840, 2160), (3840, 2160)),  # 4K: at the limit, kept
    ((1920, 1088), (1920, 1088)),
    ((10000, 3), (3840, 1)),  # never a zero-pixel side
])
def test_frames_over_the_limit_are_fitted_within_it(size, fitted):
    assert fitted_size(*size, 3840) == fitted


def test_downscale_averages_thin_detail_instead_of_dropping_it():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, ::4] = 255  # 1-px lines, 4 px apart
    small = fit_within(image, 20)
    assert small.shape == (10, 20, 3)
    assert np.all(np.abs(small.astype(int) - 64) <= 1)  # each output pixel averages 1 line and 3 gaps
    assert fit_within(image, 80) is image


def test_to_bgr8_scales_16_bit():
    assert to_bgr8(np.full((2, 2), 65535, np.uint16))[0, 0, 0] == 255


@pytest.mark.parametrize("make, reason", [
    (lambda d: d / "missing.mp4", "no such file"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty"),
    (lambda d: (d / "notes.mp4").write_text("hello " * 100) or d / "notes.mp4", "cannot open"),
    (lambda d: (d / "cut.mp4").write_bytes(VIDEO.read_bytes()[:300_000]) or d / "cut.mp4", "cannot open"),
    (lambda d: d, "no images"),
])
def test_bad_sources_fail_with_one_line(tmp_path, make, reason):
    with pytest.raises(SourceError, match=reason) as info:
        list(open_source(str(make(tmp_path))))
    assert "\n" not in str(info.value)


def test_truncated_video_reports_how_far_it_got(tmp_path):
    rng = np.random.default_rng(0)
    path = write_clip(tmp_path / "clip.avi", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(20)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = open_source(str(path))
    decoded = []
    with pytest.raises(SourceError, match="truncated"):
        for index, _, _ in source:
            decoded.append(index)
    assert 0 < len(decoded) < 20 and decoded == list(range(len(decoded)))


@pytest.fixture
def short_stream_timeout(monkeypatch):
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_MS", 500)


def test_stream_with_nothing_listening_fails_with_one_line():
    with pytest.raises(SourceError, match="could not connect") as info:
        open_source(f"http://127.0.0.1:{free_port()}/video.mjpg")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_stream_server_that_never_answers_fails_after_the_timeout(short_stream_timeout, scheme):
    with socket.socket() as silent:  # accepts connections (the kernel does) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(SourceError, match="could not connect .*no answer in 0.5 s"):
            open_source(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/video")


@pytest.mark.parametrize("then", ["close", "stall"])
def test_stream_that_drops_mid_job_gives_its_frames_then_an_error(short_stream_timeout, then):
    images = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    received = []
    with mjpeg_stream(images, then) as url:
        source = open_source(url)
        assert (source.info.kind, source.info.frame_count) == ("stream", None)
        with pytest.raises(SourceError, match="stopped after 5 frames"):
            for index, _, image in source:
                received.append((index, round(image[20, 30, 0] / 40)))
    assert received == [(i, i) for i in range(5)]  # every frame, in order


def test_cameras_and_urls_are_live_and_not_opened_ahead_of_the_job():
    assert is_live("0") and is_live("rtsp://127.0.0.1:8554/cam") and is_live("http://host/x.mjpg")
    assert not is_live("clip.mp4") and not is_live("frames/") and not is_live("10.mp4")


@pytest.mark.parametrize("windows, linux", [
    ("C:\\clips\\run.mp4", "/mnt/c/clips/run.mp4"),
    ("d:\\Users\\Me\\Videos\\my run.MP4", "/mnt/d/Users/Me/Videos/my run.MP4"),
    ("C:/clips//run.mp4", "/mnt/c/clips/run.mp4"),
    ("\\\\wsl$\\Ubuntu\\home\\me\\run.mp4", "/home/me/run.mp4"),
    ("\\\\wsl.localhost\\Ubuntu\\home\\me\\clips\\", "/home/me/clips"),
    ("//wsl.localhost/Ubuntu/home/me/run.mp4", "/home/me/run.mp4"),
    ("\\\\WSL.LOCALHOST\\Ubuntu", "/"),
])
def test_windows_paths_map_to_the_path_wsl_gives_them(windows, linux):
    assert sources.linux_path(windows) == linux


@pytest.mark.parametrize("other", ["/home/me/run.mp4", "clip.mp4", "0", "rtsp://cam/1", "C:", "CD:\\x",
                                   "\\\\server\\share\\run.mp4", "C:clip.mp4"])
def test_other_sources_are_not_windows_paths(other):
    assert sources.linux_path(other) is None


def test_drives_follow_the_automount_root_and_shares_their_distribution(tmp_path):
    assert sources.linux_path("E:\\a.mp4", mount_root="/win/") == "/win/e/a.mp4"
    assert sources.linux_path("\\\\wsl$\\ubuntu\\a.mp4", distribution="Ubuntu") == "/a.mp4"
    with pytest.raises(SourceError, match="is in WSL distribution Debian, but posebus runs in Ubuntu"):
        sources.linux_path("\\\\wsl$\\Debian\\home\\a.mp4", distribution="Ubuntu")
    conf = tmp_path / "wsl.conf"
    conf.write_text("[automount]\nroot = /windows/\n")
    assert sources.wsl_mount_root(conf) == "/windows/"
    assert sources.wsl_mount_root(tmp_path / "none") == "/mnt"


def test_a_mapped_windows_path_is_opened_and_remembered(monkeypatch):
    monkeypatch.delenv("WSL_DISTRO_NAME", raising=False)
    windows = "\\\\wsl.localhost\\Any" + str(VIDEO.resolve()).replace("/", "\\")
    source = open_source(windows)
    assert (source.info.source, source.info.mapped_from) == (str(VIDEO.resolve()), windows)
    with pytest.raises(SourceError, match=r"^C:\\x\.mp4 is /mnt/c/x\.mp4 as WSL maps Windows paths, and "
                                          r"/mnt/c/x\.mp4 does not exist$"):
        open_source("C:\\x.mp4")


def test_trimmed_takes_a_time_range_or_a_frame_count_numbered_from_zero():
    part = sources.trimmed(open_source(str(VIDEO)), start=2.0, end=3.0)
    frames = [(index, pts) for index, pts, _ in part]
    assert part.info.frame_count is None
    assert [index for index, _ in frames] == list(range(30))
    assert 2000 <= frames[0][1] < 2000 + 1000 / 30 and frames[-1][1] < 3000
    whole = [pts for _, pts, _ in open_source(str(VIDEO))]
    first = sources.trimmed(open_source(str(VIDEO)), max_frames=5)
    assert first.info.frame_count == 5 and [pts for _, pts, _ in first] == whole[:5]
    assert sources.trimmed(open_source(str(VIDEO)), start=5.5, max_frames=3).info.frame_count is None
    assert len(list(sources.trimmed(open_source(str(VIDEO)), start=5.5))) == sum(pts >= 5500 for pts in whole)
    with pytest.raises(SourceError, match="no frame between 7 s and the end of the source"):
        list(sources.trimmed(open_source(str(VIDEO)), start=7.0))
    with pytest.raises(SourceError, match="end 1 s is not after start 2 s"):
        sources.trimmed(open_source(str(VIDEO)), start=2.0, end=1.0)
