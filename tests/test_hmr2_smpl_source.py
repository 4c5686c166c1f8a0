"""The track stage's SMPL model (re-posing, detectors.hmr2.reposer; the --gltf/--bvh files, outputs.animation):
the job's --checkpoint's, read once per checkpoint and process, memory-mapped where the file allows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detectors.hmr2.checkpoint import load_smpl, mappable, read_checkpoint
from detectors.hmr2.weights import CACHE_ENV, CHECKPOINT_IN_CACHE
from outputs import gltf
from outputs.animation import smpl_model_from_checkpoint
from outputs.report import read_messages

from conftest import ROOT, SHARED, VIDEO, free_port, launch

FIXTURE = SHARED / "fixtures" / "hmr2" / "small_checkpoint.ckpt"  # zipped again with compression: not mappable
FRAMES = 12

# A real track stage replaying a recorded job, counting the checkpoint reads of its process.
COUNTING_TRACK_STAGE = """
import sys
from detectors.hmr2 import checkpoint
from stages.track.process import main
reads = []
read = checkpoint.read_checkpoint
checkpoint.read_checkpoint = lambda path, *args, **kwargs: reads.append(str(path)) or read(path, *args, **kwargs)
main(sys.argv[1:])
print(f"checkpoint reads: {reads}")
"""


@pytest.fixture(scope="module")
def taller(tmp_path_factory) -> Path:
    """The fixture checkpoint as torch.save writes it (mappable), its cfg as plain dicts, SMPL 20 % taller:
    an SMPL model that is not the fixture's."""
    checkpoint = read_checkpoint(FIXTURE)
    state = dict(checkpoint["state_dict"])
    state["smpl.v_template"] = state["smpl.v_template"] * 1.2
    path = tmp_path_factory.mktemp("taller") / "taller.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": json.loads(json.dumps(checkpoint["hyper_parameters"]))},
               path)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A 4D-Humans cache holding the fixture checkpoint: what a stage not told --checkpoint would take."""
    folder = tmp_path_factory.mktemp("cache")
    (folder / CHECKPOINT_IN_CACHE).parent.mkdir(parents=True)
    (folder / CHECKPOINT_IN_CACHE).symlink_to(FIXTURE)
    return folder


@pytest.fixture(scope="module")
def run(taller, cache, tmp_path_factory) -> Path:
    """A one-off HMR 2.0 run of vid.mp4's first frames with --checkpoint taller --gltf --bvh, recorded."""
    out = tmp_path_factory.mktemp("run")
    result = launch(VIDEO, "--out", out, "--job", "vid", "--results", f"tcp://127.0.0.1:{free_port()}",
                    "--detector", "hmr2", "--checkpoint", taller, "--max-frames", FRAMES, "--gltf", out,
                    "--bvh", out, "--record", out / "recorded", "--job-log", out / "logs", timeout=600,
                    env={**os.environ, CACHE_ENV: str(cache)})
    assert result.returncode == 0, result.stderr
    return out


def test_a_checkpoint_is_mapped_where_torch_save_wrote_it_and_read_whole_where_compressed(taller):
    assert mappable(taller) and not mappable(FIXTURE)
    for path in (taller, FIXTURE):
        mapped, read = read_checkpoint(path, mmap=True)["state_dict"], read_checkpoint(path)["state_dict"]
        assert mapped.keys() == read.keys() and all(torch.equal(mapped[key], read[key]) for key in read)


def test_a_stored_checkpoint_torch_cannot_map_is_read_whole(taller, monkeypatch):
    load = torch.load

    def unmappable(*args, mmap=None, **kwargs):
        if mmap:
            raise RuntimeError("Trying to resize storage that is not resizable")
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", unmappable)
    read = read_checkpoint(taller, mmap=True)["state_dict"]
    monkeypatch.setattr(torch, "load", load)
    assert all(torch.equal(read[key], value) for key, value in read_checkpoint(taller)["state_dict"].items())


def test_the_animation_files_take_the_smpl_of_the_checkpoint_the_stage_was_given(run, taller, tmp_path):
    """--checkpoint taller, the fixture in the cache: the .glb's mesh is the taller SMPL's, as the reposer's."""
    messages = read_messages(run / "vid.jsonl")
    expected = gltf.write_gltf(messages, tmp_path, smpl_model_from_checkpoint(taller))[0].read_bytes()
    cached = gltf.write_gltf(messages, tmp_path, smpl_model_from_checkpoint(FIXTURE))[0].read_bytes()
    written = (run / "vid.track1.glb").read_bytes()
    assert written == expected and written != cached
    assert (run / "vid.track1.bvh").is_file()


def test_the_track_stage_reads_the_checkpoint_once_for_reposing_and_both_files(run, taller, cache, tmp_path):
    files = tmp_path / "files"
    result = subprocess.run(
        [sys.executable, "-c", COUNTING_TRACK_STAGE, "--replay", str(run / "recorded" / "vid"),
         "--checkpoint", str(taller), "--gltf", str(files), "--bvh", str(files),
         "--results", f"tcp://127.0.0.1:{free_port()}", "--history", f"tcp://127.0.0.1:{free_port()}",
         "--acks", f"tcp://127.0.0.1:{free_port()}", "--job-log", str(tmp_path / "logs"), "--log-level", "warning"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in files.iterdir()) == ["vid.track1.bvh", "vid.track1.glb"]
    assert "smpl_model_missing" not in result.stderr
    assert result.stdout.splitlines()[-1] == f"checkpoint reads: {[str(taller.resolve())]}"
    assert (files / "vid.track1.glb").read_bytes() == (run / "vid.track1.glb").read_bytes()


def test_smpl_is_one_layer_per_checkpoint_whatever_path_names_it(taller, tmp_path):
    (tmp_path / "link.ckpt").symlink_to(taller)
    assert load_smpl(tmp_path / "link.ckpt") is load_smpl(taller)
    assert torch.equal(load_smpl(taller).v_template, read_checkpoint(taller)["state_dict"]["smpl.v_template"])
