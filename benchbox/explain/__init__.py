"""Explanation tools: explainers that turn a model into saliency maps, and metrics that score maps.

Modules (import from them directly so that the numpy-only metrics do not pull in torch):
`maps` (normalisation, sharpening, pixel ranking), `cam` (Grad-CAM / Grad-CAM++ via
pytorch-grad-cam), `smoothgrad`, `baseline` (the centred-Gaussian map every explainer must
beat), `localisation` (maps vs ground-truth masks), `faithfulness` (deletion / insertion AUC)
and `road` (ROAD with noisy linear imputation).
"""
