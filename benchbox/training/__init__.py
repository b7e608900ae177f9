"""Training machinery written once and shared by every method.

Modules (one job each): `runtime` (seeding, device and threads), `data` (ImageSet -> tensors,
augmentation, loaders), `sampling` (class weights, duplicate and synthetic minority
oversampling), `losses` (focal loss), `loop` (a training stage: early stopping on a validation
score, best-weights restore, schedulers), `finetune` (freezing, top-fraction unfreezing,
differential learning rates), `folds` (grouped inner cross-validation), `predict` (batched
inference with test-time augmentation), `pretrained` (ImageNet weights from a local folder or
the torchvision/timm caches), `checkpoint` (state dicts + settings JSON, safe loading).
`/work/notes/methods_api.md` and `registry/README.md` say how a method uses them.
"""
