"""Loading HMR 2.0 checkpoints: no yacs/Lightning, strict keys, no pickled code, SMPL from files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.hmr2 import smpl
from detectors.hmr2.checkpoint import CheckpointMismatch, load_hmr2, read_checkpoint
from detectors.hmr2.safe_pickle import RefusedGlobal

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".." / "shared" / "fixtures" / "hmr2"
CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"
SMALL_CONFIG = FIXTURES / "small_config.json"


@pytest.fixture(scope="module")
def state_dict():
    return read_checkpoint(CHECKPOINT)["state_dict"]


def save_state_dict(state: dict, path: Path) -> Path:
    torch.save({"state_dict": state}, path)
    return path


def test_loads_with_yacs_and_lightning_absent():
    blocked = ("yacs", "pytorch_lightning", "lightning", "hmr2", "detectron2", "timm", "torchvision", "pyrender")
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from detectors.hmr2.checkpoint import load_hmr2
model = load_hmr2({str(CHECKPOINT)!r})
assert model.config.embed_dim == 64
loaded = [name for name in sys.modules if name.split(".")[0] in {blocked!r}]
assert not loaded, loaded
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_missing_key_is_named(state_dict, tmp_path):
    state = {k: v for k, v in state_dict.items() if k != "smpl_head.decshape.bias"}
    with pytest.raises(CheckpointMismatch, match=r"missing keys: smpl_head\.decshape\.bias"):
        load_hmr2(save_state_dict(state, tmp_path / "m.ckpt"), config=SMALL_CONFIG)


def test_unexpected_key_is_named_but_discriminator_is_ignored(state_dict, tmp_path):
    assert any(key.startswith("discriminator.") for key in state_dict)
    state = {**state_dict, "backbone.extra_token": torch.zeros(3)}
    with pytest.raises(CheckpointMismatch, match=r"unexpected keys: backbone\.extra_token"):
        load_hmr2(save_state_dict(state, tmp_path / "u.ckpt"), config=SMALL_CONFIG)


def test_wrong_shape_names_key_and_both_shapes(state_dict, tmp_path):
    state = {**state_dict, "backbone.pos_embed": torch.zeros(1, 192, 64)}
    with pytest.raises(CheckpointMismatch, match=r"backbone\.pos_embed: checkpoint shape \(1, 192, 64\), "
                                                 r"model shape \(1, 193, 64\)"):
        load_hmr2(save_state_dict(state, tmp_path / "s.ckpt"), config=SMALL_CONFIG)


def test_full_size_config_does_not_fit_the_small_checkpoint(state_dict, tmp_path):
    # Without a cfg in the file the loader assumes ViT-H; the shape check must say so, not crash later.
    with pytest.raises(CheckpointMismatch, match=r"backbone\.pos_embed: checkpoint shape \(1, 193, 64\)"):
        load_hmr2(save_state_dict(state_dict, tmp_path / "nocfg.ckpt"))


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, path)
    with pytest.raises(RefusedGlobal, match=r"refusing to load the checkpoint: it references the global \w+\.system"):
        load_hmr2(path)
    assert not marker.exists()


def test_malicious_smpl_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(RefusedGlobal, match=r"os\.system"):
        smpl.read_pickle(path)
    assert not marker.exists()


def test_chumpy_smpl_file_is_refused_with_advice(tmp_path):
    path = tmp_path / "basicModel.pkl"
    path.write_bytes(b"cchumpy.ch\nCh\n)R.")
    with pytest.raises(RefusedGlobal, match="chumpy-free"):
        smpl.read_pickle(path)


def test_smpl_files_give_the_checkpoint_buffers(state_dict):
    buffers = smpl.buffers_from_files(FIXTURES / "synthetic_smpl" / "SMPL_NEUTRAL.pkl",
                                      FIXTURES / "synthetic_smpl" / "SMPL_to_J19.pkl")
    for key, value in buffers.items():
        expected = state_dict["smpl." + key]
        assert value.dtype == expected.dtype, key
        assert torch.equal(value, expected), key


def test_checkpoint_without_smpl_loads_smpl_from_files(state_dict, tmp_path):
    state = {k: v for k, v in state_dict.items() if not k.startswith("smpl.")}
    path = save_state_dict(state, tmp_path / "nosmpl.ckpt")
    with pytest.raises(FileNotFoundError, match="smpl_model_path"):
        load_hmr2(path, config=SMALL_CONFIG)
    model = load_hmr2(path, config=SMALL_CONFIG,
                      smpl_model_path=FIXTURES / "synthetic_smpl" / "SMPL_NEUTRAL.pkl",
                      j19_regressor_path=FIXTURES / "synthetic_smpl" / "SMPL_to_J19.pkl")
    reference = np.load(FIXTURES / "io.npz")
    with torch.inference_mode():
        out = model(torch.from_numpy(reference["img"][:1]))
    np.testing.assert_allclose(out["pred_vertices"].numpy(), reference["pred_vertices"][:1], atol=1e-5)
