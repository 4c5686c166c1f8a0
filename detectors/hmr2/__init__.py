"""HMR 2.0 (4D-Humans) in plain PyTorch: no hmr2, detectron2, Lightning, yacs, timm or pyrender.

- ``model``: the network (``vit`` backbone, ``head`` SMPL decoder, ``smpl`` layer);
- ``checkpoint.load_hmr2``: the released Lightning checkpoint, read without running pickled code;
- ``weights``: where the checkpoint is looked for, what to tell the user, a resumable download;
- ``preprocess``: person crops equal to upstream's ``ViTDetDataset``;
- ``detector.Hmr2Detector``: the posebus ``Detector``.
"""
