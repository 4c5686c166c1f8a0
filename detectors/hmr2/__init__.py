"""HMR 2.0 (4D-Humans) in plain PyTorch: no hmr2, detectron2, Lightning, yacs, timm or pyrender.

- ``model``: the network (``vit`` backbone, ``head`` SMPL decoder, ``smpl`` layer);
- ``checkpoint.load_hmr2``: the released Lightning checkpoint, read without running pickled code;
- ``weights``: where the checkpoint is looked for, what to tell the user, a resumable download;
- ``preprocess``: person crops equal to upstream's ``ViTDetDataset``;
- ``detector.Hmr2Detector``: the posebus ``Detector``.
"""
from __future__ import annotations

from detectors import register
from options import LAUNCH, Option
from options.groups import SECOND_LOOK

# Also the SMPL model's source for the track stage (detectors.hmr2.reposer: what follows from the SMPL parameters
# is derived again from the smoothed ones) and for the animation export's command line (outputs.gltf).
CHECKPOINT = Option("--checkpoint", "HMR 2.0 checkpoint (default: the 4D-Humans cache)",
                    takers=(LAUNCH, "detect", "track"))


def _detector(**options):
    from detectors.hmr2.detector import Hmr2Detector  # torch: only a worker that runs HMR 2.0 pays for it

    return Hmr2Detector(**options)


register("hmr2", _detector,
         CHECKPOINT,
         Option("--hmr2-config", "JSON of the network's sizes, for checkpoints that lack them", param="config"),
         Option("--device", "torch device for HMR 2.0 (cpu, cuda, cuda:1)", default="cpu"),
         Option("--mesh", "HMR 2.0: publish the 6890 mesh vertices", bool, False),
         Option("--boxes", "HMR 2.0 person boxes (auto: Faster R-CNN on a GPU with torchvision, else BlazePose)",
                default="auto", choices=("auto", "blazepose", "fasterrcnn"), param="box_source"),
         Option("--crops-per-forward", "HMR 2.0 batch size in person crops", int, 16, param="batch_size"),
         SECOND_LOOK)
