"""Loading HMR 2.0 checkpoints without Lightning, yacs, or running pickled code.

The released checkpoint is a Lightning ``.ckpt``: a ``torch.save`` zip whose
pickle holds the state dict and, under ``hyper_parameters.cfg``, a yacs
``CfgNode``. It is read with an allow-list unpickler in which ``CfgNode`` becomes
a plain dict. The network size comes from, in order: an explicit config, the
checkpoint's cfg (the official cfg names no backbone size: ViT-H is hard-coded
upstream), the defaults (ViT-H). The key check is strict, unlike upstream's
``strict=False`` which silently ignores a truncated or mismatched file.
"""
from __future__ import annotations

import codecs
import collections
import functools
import json
import types
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from detectors.hmr2 import safe_pickle, smpl, weights
from detectors.hmr2.model import HMR2, Hmr2Config

IGNORED_PREFIXES = ("discriminator.",)  # the training-only pose discriminator
SMPL_PREFIX = "smpl."


class ConfigNode(dict):
    """Stands in for yacs' ``CfgNode`` (a dict subclass); its pickled attributes are kept and unused."""


class CheckpointUnpickler(safe_pickle.RestrictedUnpickler):
    # torch.load resolves the *Storage classes itself; everything else asks this list.
    # Besides tensors and the cfg, Lightning stores loop/callback state made of plain
    # containers; bytes in protocol-2 pickles arrive through _codecs.encode.
    what = "the checkpoint"
    allowed = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "device"): torch.device,
        ("collections", "OrderedDict"): collections.OrderedDict,
        **{(module, "set"): set for module in ("builtins", "__builtin__")},
        **{(module, "frozenset"): frozenset for module in ("builtins", "__builtin__")},
        ("_codecs", "encode"): codecs.encode,
        ("yacs.config", "CfgNode"): ConfigNode,
    }


class CheckpointMismatch(ValueError):
    """The checkpoint's tensors do not fit the network built for it."""


def mappable(path: str | Path) -> bool:
    """Whether ``torch.load(mmap=True)`` can map the file: a zip whose records are stored, as ``torch.save``
    writes them (a checkpoint zipped again with compression, like the test fixture's, cannot be)."""
    if not zipfile.is_zipfile(path):
        return False  # torch's legacy format
    with zipfile.ZipFile(path) as archive:
        return all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """The checkpoint's top-level dictionary, tensors on the CPU.

    mmap: map the file rather than read it, where it can be (``mappable``): a tensor's bytes are read
    when it is used, so that taking SMPL's few MB out of the 2.7 GB checkpoint reads a few MB.
    ``weights_only=True`` cannot be combined with a ``pickle_module``: the allow-list unpickler plays its part.
    """
    pickle_module = types.SimpleNamespace(
        __name__="detectors.hmr2.checkpoint",
        Unpickler=CheckpointUnpickler,
        load=functools.partial(safe_pickle.load, unpickler=CheckpointUnpickler),
    )
    if mmap and mappable(path):
        try:
            return torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False, mmap=True)
        except RuntimeError:  # stored records torch still cannot map (e.g. misaligned): read it whole
            pass
    return torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False)


def config_from_cfg(cfg: Mapping) -> Hmr2Config:
    """Sizes from a 4D-Humans model cfg (``hyper_parameters.cfg`` or ``model_config.yaml`` as a dict)."""
    model = cfg["MODEL"]
    backbone = model.get("BACKBONE", {})
    head = model.get("SMPL_HEAD", {})
    decoder = head.get("TRANSFORMER_DECODER", {})
    unsupported = {
        "MODEL.BACKBONE.TYPE": (backbone.get("TYPE", "vit"), "vit"),
        "MODEL.SMPL_HEAD.TYPE": (head.get("TYPE", "transformer_decoder"), "transformer_decoder"),
        "MODEL.SMPL_HEAD.TRANSFORMER_INPUT": (head.get("TRANSFORMER_INPUT", "zero"), "zero"),
        "MODEL.SMPL_HEAD.IEF_ITERS": (head.get("IEF_ITERS", 1), 1),
        "MODEL.SMPL_HEAD.JOINT_REP": (head.get("JOINT_REP", "6d"), "6d"),
        "MODEL.IMAGE_SIZE": (model.get("IMAGE_SIZE", 256), 256),
    }
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise CheckpointMismatch(f"{key} = {value!r}; only {supported!r} is implemented")
    default = Hmr2Config()
    config = Hmr2Config(
        embed_dim=backbone.get("EMBED_DIM", default.embed_dim),
        depth=backbone.get("DEPTH", default.depth),
        num_heads=backbone.get("NUM_HEADS", default.num_heads),
        decoder_dim=decoder.get("dim", default.decoder_dim),
        decoder_depth=decoder.get("depth", default.decoder_depth),
        decoder_heads=decoder.get("heads", default.decoder_heads),
        decoder_dim_head=decoder.get("dim_head", default.decoder_dim_head),
        decoder_mlp_dim=decoder.get("mlp_dim", default.decoder_mlp_dim),
        focal_length=float(cfg.get("EXTRA", {}).get("FOCAL_LENGTH", default.focal_length)),
    )
    context_dim = decoder.get("context_dim", config.embed_dim)
    if context_dim != config.embed_dim:
        raise CheckpointMismatch(
            f"decoder context_dim {context_dim} differs from the backbone width {config.embed_dim}")
    return config


def config_from_json(path: str | Path) -> Hmr2Config:
    """Sizes from a JSON file laid out like the parity fixture's ``small_config.json``."""
    data = json.loads(Path(path).read_text())
    backbone, head = data["backbone"], data["smpl_head"]
    return Hmr2Config(
        embed_dim=backbone["embed_dim"], depth=backbone["depth"], num_heads=backbone["num_heads"],
        decoder_dim=head["dim"], decoder_depth=head["depth"], decoder_heads=head["heads"],
        decoder_dim_head=head["dim_head"], decoder_mlp_dim=head["mlp_dim"],
        focal_length=float(data["camera"]["focal_length"]), image_size=data["image"]["image_size"],
    )


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointMismatch naming every missing, unexpected or wrongly shaped key."""
    problems = []
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for key in expected.keys() & found.keys():
        if expected[key].shape != found[key].shape:
            problems.append(f"{key}: checkpoint shape {tuple(found[key].shape)}, "
                            f"model shape {tuple(expected[key].shape)}")
    if problems:
        raise CheckpointMismatch("checkpoint does not fit the HMR 2.0 network:\n  " + "\n  ".join(problems))


def smpl_state_from_files(model_path: Path, j19_path: Path) -> dict[str, torch.Tensor]:
    for path in (model_path, j19_path):
        if not path.is_file():
            raise FileNotFoundError(f"the checkpoint has no smpl.* buffers and {path} does not exist; "
                                    f"pass smpl_model_path= and j19_regressor_path=")
    return {SMPL_PREFIX + key: value for key, value in smpl.buffers_from_files(model_path, j19_path).items()}


def smpl_state(checkpoint_path: Path, state: dict[str, torch.Tensor], smpl_model_path: str | Path | None = None,
               j19_regressor_path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's ``smpl.*`` buffers, or, when it has none, those of the SMPL files (see ``load_hmr2``)."""
    found = {key: value for key, value in state.items() if key.startswith(SMPL_PREFIX)}
    if found:
        return found
    data_dir = (weights.cache_dir_of(checkpoint_path) or checkpoint_path.parent) / "data"
    return smpl_state_from_files(Path(smpl_model_path or data_dir / "smpl" / "SMPL_NEUTRAL.pkl"),
                                 Path(j19_regressor_path or data_dir / "SMPL_to_J19.pkl"))


def load_smpl(checkpoint_path: str | Path) -> smpl.SMPL:
    """The SMPL layer of a checkpoint alone, float32 on the CPU, shared and not to be changed: the track
    stage poses it (``reposer``) and exports its mesh (``outputs.animation``), and reads it once."""
    return _smpl_layer(Path(checkpoint_path).resolve())


@functools.cache  # one SMPL per checkpoint and process: reading a checkpoint takes seconds
def _smpl_layer(checkpoint_path: Path) -> smpl.SMPL:
    state = smpl_state(checkpoint_path, read_checkpoint(checkpoint_path, mmap=True)["state_dict"])
    layer = smpl.SMPL()
    layer.load_state_dict({key[len(SMPL_PREFIX):]: value for key, value in state.items()})  # copies out of the map
    return layer.requires_grad_(False).eval()


def load_hmr2(checkpoint_path: str | Path, device: str | torch.device = "cpu",
              config: Hmr2Config | str | Path | None = None,
              smpl_model_path: str | Path | None = None, j19_regressor_path: str | Path | None = None) -> HMR2:
    """The network from a checkpoint, in eval mode on ``device``.

    config: an Hmr2Config, a JSON file like ``small_config.json``, or None to read the checkpoint's cfg.
    smpl_model_path / j19_regressor_path: only used when the checkpoint lacks the ``smpl.*`` buffers;
    default to 4D-Humans' ``<cache>/data/smpl/SMPL_NEUTRAL.pkl`` and ``<cache>/data/SMPL_to_J19.pkl``
    (``<cache>`` being the checkpoint's folder when it is not in the 4D-Humans layout).
    """
    checkpoint_path = Path(checkpoint_path)
    checkpoint = read_checkpoint(checkpoint_path)
    if isinstance(config, (str, Path)):
        config = config_from_json(config)
    elif config is None:
        cfg = checkpoint.get("hyper_parameters", {}).get("cfg")
        config = Hmr2Config() if cfg is None else config_from_cfg(cfg)

    state = {key: value for key, value in checkpoint["state_dict"].items() if not key.startswith(IGNORED_PREFIXES)}
    state |= smpl_state(checkpoint_path, state, smpl_model_path, j19_regressor_path)

    # Built without memory, then the checkpoint's tensors are adopted as they are: no second copy.
    with torch.device("meta"):
        model = HMR2(config)
    expected = model.state_dict()
    check_state_dict(expected, state)
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in state.items()}, assign=True)
    return model.requires_grad_(False).eval().to(device)
