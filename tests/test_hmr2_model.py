"""HMR 2.0 network parity with the official implementation (fixtures from 4D-Humans on CPU)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.hmr2.checkpoint import config_from_json, load_hmr2
from detectors.hmr2.model import BACKBONE_COLUMNS, HMR2, Hmr2Config, rot6d_to_rotmat

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "hmr2"
CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURES / "io.npz"))


@pytest.fixture(scope="module")
def model():
    return load_hmr2(CHECKPOINT)


@pytest.fixture(scope="module")
def outputs(model, reference):
    with torch.inference_mode():
        return model(torch.from_numpy(reference["img"]))


def test_config_is_read_from_the_checkpoint_and_from_json(model):
    small = Hmr2Config(embed_dim=64, depth=2, num_heads=4, decoder_depth=2, decoder_heads=2,
                       decoder_dim_head=16, decoder_mlp_dim=64)
    assert model.config == small
    assert config_from_json(FIXTURES / "small_config.json") == small


def test_json_config_gives_the_same_model(reference, outputs):
    model = load_hmr2(CHECKPOINT, config=FIXTURES / "small_config.json")
    with torch.inference_mode():
        again = model(torch.from_numpy(reference["img"][:1]))
    np.testing.assert_allclose(again["pred_vertices"][0], outputs["pred_vertices"][0], atol=1e-6)


@pytest.mark.parametrize("key", ["pred_cam", "focal_length", "pred_keypoints_3d", "pred_keypoints_2d",
                                 "pred_vertices"])
def test_outputs_match_official(outputs, reference, key):
    np.testing.assert_allclose(outputs[key].numpy(), reference[key], atol=1e-5, rtol=0)


def test_camera_translation_matches_official(outputs, reference):
    np.testing.assert_allclose(outputs["pred_cam_t"].numpy(), reference["pred_cam_t"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", ["global_orient", "body_pose", "betas"])
def test_smpl_params_match_official(outputs, reference, key):
    np.testing.assert_allclose(outputs["pred_smpl_params"][key].numpy(), reference[f"pred_smpl_params/{key}"],
                               atol=1e-5, rtol=0)


def test_intermediates_match_official(model, reference):
    crops = torch.from_numpy(reference["img"])[:, :, :, BACKBONE_COLUMNS]
    with torch.inference_mode():
        patch_grid = model.backbone.patch_embed.proj(crops)
        feature_map = model.backbone(crops)
        tokens, _ = model.backbone.forward_features(crops)
        token_out = model.smpl_head.decode_token(tokens)
        pose_6d = model.smpl_head(tokens)["pose_6d"]
    np.testing.assert_allclose(patch_grid.numpy(), reference["intermediate/patch_embed_conv"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(feature_map.numpy(), reference["backbone_features"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(token_out.numpy(), reference["intermediate/token_out"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pose_6d.numpy(), reference["intermediate/pred_pose_6d"], atol=1e-5, rtol=0)


def test_rot6d_columns_convention(reference):
    rotmats = rot6d_to_rotmat(torch.from_numpy(reference["intermediate/pred_pose_6d"]).reshape(3, 24, 6))
    np.testing.assert_allclose(rotmats[:, :1].numpy(), reference["pred_smpl_params/global_orient"], atol=1e-5)
    identity = rot6d_to_rotmat(torch.tensor([2.0, 0.0, 0.0, 0.5, 3.0, 0.0]))
    np.testing.assert_allclose(identity.numpy(), np.eye(3), atol=1e-7)


def test_appearance_is_one_vector_per_crop(outputs):
    assert outputs["appearance"].shape == (3, 64)
    assert torch.isfinite(outputs["appearance"]).all()


def test_full_size_model_has_the_official_keys_and_shapes():
    manifest = json.loads((FIXTURES / "manifest_full.json").read_text())
    official = {entry["key"]: (tuple(entry["shape"]), entry["dtype"])
                for entry in manifest["keys"] if not entry["key"].startswith("discriminator.")}
    with torch.device("meta"):
        model = HMR2(Hmr2Config())
    ours = {key: (tuple(value.shape), str(value.dtype).removeprefix("torch."))
            for key, value in model.state_dict().items()}
    assert ours == official
    counts = manifest["parameter_counts"]
    assert sum(p.numel() for p in model.backbone.parameters()) == counts["backbone"]
    assert sum(p.numel() for p in model.smpl_head.parameters()) == counts["smpl_head"]
