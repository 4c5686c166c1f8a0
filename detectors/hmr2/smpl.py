"""SMPL as HMR 2.0 uses it: 6890 vertices and 44 keypoints from rotation matrices.

Buffer names equal the checkpoint's ``smpl.*`` keys, so the released checkpoint
fills this module on its own. The maths is smplx's (``smplx.lbs``); what HMR 2.0
adds is the keypoint set:

    joints45  = 24 skinned SMPL joints ++ 21 vertices (nose, eyes, ears, toes, heels, fingertips)
    keypoints = joints45[joint_map] (OpenPose BODY_25) ++ joint_regressor_extra · vertices (J19)

Only a checkpoint without those buffers needs the SMPL files:
``SMPL_NEUTRAL.pkl`` (a Python 2 pickle of numpy arrays and a scipy sparse
``J_regressor``; files that still hold chumpy objects are refused) and
``SMPL_to_J19.pkl`` (a pickled (19, 6890) array).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from smplx.lbs import lbs, vertices2joints
from smplx.vertex_ids import vertex_ids
from torch import nn

from detectors.hmr2 import safe_pickle

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
NUM_BETAS = 10
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9

# OpenPose BODY_25 as indices into joints45 (hmr2 smpl_wrapper).
OPENPOSE_JOINT_MAP = (24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34)
# smplx's vertex joints for SMPL, in smplx's VertexJointSelector order.
EXTRA_JOINT_VERTICES = tuple(
    vertex_ids["smplh"][name]
    for name in ("nose", "reye", "leye", "rear", "lear",
                 "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
                 *(hand + tip for hand in "lr" for tip in ("thumb", "index", "middle", "ring", "pinky")))
)
NUM_J19 = 19
NUM_KEYPOINTS = len(OPENPOSE_JOINT_MAP) + NUM_J19


class VertexJointSelector(nn.Module):
    """Appends chosen vertices to the joints (smplx's module, kept for the key name)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("extra_joints_idxs", torch.tensor(EXTRA_JOINT_VERTICES))

    def forward(self, vertices: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """vertices (B, V, 3), joints (B, J, 3) -> (B, J + 21, 3)."""
        return torch.cat([joints, vertices[:, self.extra_joints_idxs]], dim=1)


class SMPL(nn.Module):
    """Neutral SMPL; buffers start empty and are filled from a checkpoint or ``buffers_from_files``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("v_template", torch.empty(NUM_VERTICES, 3))
        self.register_buffer("shapedirs", torch.empty(NUM_VERTICES, 3, NUM_BETAS))
        self.register_buffer("posedirs", torch.empty(NUM_POSE_BASIS, NUM_VERTICES * 3))
        self.register_buffer("J_regressor", torch.empty(NUM_JOINTS, NUM_VERTICES))
        self.register_buffer("lbs_weights", torch.empty(NUM_VERTICES, NUM_JOINTS))
        self.register_buffer("parents", torch.empty(NUM_JOINTS, dtype=torch.int64))
        self.register_buffer("faces_tensor", torch.empty(NUM_FACES, 3, dtype=torch.int64))
        self.register_buffer("joint_regressor_extra", torch.empty(NUM_J19, NUM_VERTICES))
        self.register_buffer("joint_map", torch.tensor(OPENPOSE_JOINT_MAP))
        self.vertex_joint_selector = VertexJointSelector()

    def forward(self, global_orient: torch.Tensor, body_pose: torch.Tensor,
                betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """global_orient (B, 1, 3, 3), body_pose (B, 23, 3, 3) rotation matrices, betas (B, 10)
        -> vertices (B, 6890, 3), keypoints (B, 44, 3); metres, SMPL frame, no translation."""
        pose = torch.cat([global_orient, body_pose], dim=1)
        vertices, joints = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs,
                               self.J_regressor, self.parents, self.lbs_weights, pose2rot=False)
        joints45 = self.vertex_joint_selector(vertices, joints)
        j19 = vertices2joints(self.joint_regressor_extra, vertices)
        return vertices, torch.cat([joints45[:, self.joint_map], j19], dim=1)


# numpy 2 moved numpy.core to numpy._core; pickles name either.
_MULTIARRAY = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


class SmplFileUnpickler(safe_pickle.RestrictedUnpickler):
    """Numpy arrays, numpy scalars and scipy sparse matrices, as Python 2 and 3 pickles name them."""

    what = "the SMPL file"
    allowed = {
        **{(module, name): getattr(_MULTIARRAY, name)
           for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")},
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        **{(module, "csc_matrix"): scipy.sparse.csc_matrix for module in ("scipy.sparse.csc", "scipy.sparse._csc")},
        **{(module, "csr_matrix"): scipy.sparse.csr_matrix for module in ("scipy.sparse.csr", "scipy.sparse._csr")},
    }

    def find_class(self, module: str, name: str):
        if module.startswith("chumpy"):
            raise safe_pickle.RefusedGlobal(
                f"{module}.{name}: this SMPL file still contains chumpy objects; use a chumpy-free "
                f"SMPL_NEUTRAL.pkl (4D-Humans writes one to ~/.cache/4DHumans/data/smpl/ on first run)"
            )
        return super().find_class(module, name)


def read_pickle(path: Path) -> object:
    """A Python 2 or 3 pickle of numpy/scipy data; latin1 because Python 2 byte strings hold array bytes."""
    with open(path, "rb") as file:
        return safe_pickle.load(file, SmplFileUnpickler, encoding="latin1")


def dense(array) -> np.ndarray:
    return array.toarray() if scipy.sparse.issparse(array) else np.asarray(array)


def float_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def buffers_from_files(model_path: Path, j19_path: Path) -> dict[str, torch.Tensor]:
    """SMPL buffers (keys as in ``SMPL.state_dict()``), built as smplx builds them."""
    model = read_pickle(model_path)
    j19 = dense(read_pickle(j19_path))
    parents = dense(model["kintree_table"])[0].astype(np.int64)
    parents[0] = -1  # the released files store the root's parent as uint32 max
    posedirs = dense(model["posedirs"])
    return {
        "v_template": float_tensor(dense(model["v_template"])),
        "shapedirs": float_tensor(dense(model["shapedirs"])[:, :, :NUM_BETAS]),
        # (V, 3, P) -> (P, V·3): smplx keeps the pose basis pre-transposed for one matmul.
        "posedirs": float_tensor(posedirs.reshape(-1, posedirs.shape[-1]).T),
        "J_regressor": float_tensor(dense(model["J_regressor"])),
        "lbs_weights": float_tensor(dense(model["weights"])),
        "parents": torch.from_numpy(parents),
        "faces_tensor": torch.from_numpy(dense(model["f"]).astype(np.int64)),
        "joint_regressor_extra": float_tensor(j19),
        "joint_map": torch.tensor(OPENPOSE_JOINT_MAP),
        "vertex_joint_selector.extra_joints_idxs": torch.tensor(EXTRA_JOINT_VERTICES),
    }
