"""Every CAM explainer reads a map of at least 4 x 4 cells in every profile (issue 12).

A 2 x 2 map upsampled to the image peaks in a corner, so localisation would measure the map's
resolution, not the explainer; the small profiles name a shallower `cam_layer` in their cards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchbox.errors import BenchboxError
from benchbox.registry import get_card, method_cards

MIN_CELLS = 4
CAM_EXPLAINERS = {"gradcam", "gradcam++"}
CARDS = method_cards()
CAM_CASES = [(name, profile) for name in CARDS.names() if CAM_EXPLAINERS & set(CARDS.get(name).explainers)
             for profile in ("smoke", "quick", "paper")]


def cam_map_shape(name: str, profile: str) -> tuple[int, int]:
    """The spatial size of what the method's CAM layer outputs at the profile's input size."""
    card = get_card(name)
    method, settings = card.create(), card.settings(profile)
    method.settings = settings
    network = method.build_network(settings).eval()
    (layer,) = method.cam_layers(network)
    shapes = []
    hook = layer.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape[-2:])))
    with torch.no_grad():
        network(torch.zeros(1, 3, settings["input_size"], settings["input_size"]))
    hook.remove()
    return shapes[0]


def test_every_carded_cam_method_is_covered():
    names = {name for name, _ in CAM_CASES}
    assert {"msfa", "resnet50", "soft_attention", "recall_ensemble", "xception", "inception_v3", "efficientnet_b0", "dual_task"} <= names


@pytest.mark.parametrize("name,profile", CAM_CASES)
def test_cam_layer_map_has_at_least_4x4_cells(name, profile):
    height, width = cam_map_shape(name, profile)
    assert height >= MIN_CELLS and width >= MIN_CELLS, f"{name} {profile}: CAM map {height} x {width}"


def test_small_profiles_read_the_deepest_4x4_map_and_the_paper_profile_the_last_layer():
    assert cam_map_shape("msfa", "smoke") == (6, 6)  # layer2 at 48 px
    assert cam_map_shape("msfa", "quick") == (4, 4)  # layer3 at 64 px
    assert cam_map_shape("msfa", "paper") == (7, 7)  # layer4 at 224 px
    assert cam_map_shape("inception_v3", "quick") == (5, 5)  # Mixed_6e at 107 px


def test_a_cam_layer_that_is_not_in_the_network_names_the_card():
    card = get_card("msfa")
    method = card.create()
    method.build({**card.settings("smoke"), "cam_layer": "backbone.layer9"})
    with pytest.raises(BenchboxError, match=r"cam_layer 'backbone.layer9'.*registry/msfa.yaml"):
        method.explain(np.zeros((1, 48, 48, 3), dtype=np.uint8), np.array([0]), "gradcam")
