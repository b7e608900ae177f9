"""The resolved settings of every hosted method x profile are exactly those of the committed snapshot.

Fit keys, cached models and the CI gate's baseline are all derived from `card.settings(profile)`,
so a change to how cards are written (shared base cards, `include:`) must not change one value,
type or key. The snapshot `card_snapshot.json` was taken from the cards as they were before
`include:` existed (commit b9c080c); a deliberate settings change regenerates it with
`python tests/test_card_snapshot.py > tests/card_snapshot.json` and says so in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchbox.methods.base import PROFILES
from benchbox.registry import method_cards

SNAPSHOT = Path(__file__).with_name("card_snapshot.json")
HOSTED = ("dual_task", "dual_task_unet_r34", "efficientnet_b0", "efficientnet_b0_128", "inception_v3", "msfa", "recall_ensemble",
          "recall_ensemble_recalibrated", "resnet50", "soft_attention", "xception")


def resolved() -> dict:
    """What the registry resolves for each hosted method: its declaration and every profile's settings."""
    cards = method_cards(entry_points=False)
    out = {}
    for name in HOSTED:
        card = cards.get(name)
        out[name] = {
            "import_path": card.import_path,
            "task": card.task,
            "explainers": list(card.explainers),
            "needs_masks": card.needs_masks,
            "profiles": {profile: card.settings(profile) for profile in PROFILES},
        }
    return out


def canonical(value) -> str:
    """JSON with sorted keys: the form fit keys hash, so 1 vs 1.0 or a list vs a scalar differ."""
    return json.dumps(value, sort_keys=True)


@pytest.fixture(scope="module")
def snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


@pytest.fixture(scope="module")
def now() -> dict:
    return resolved()


def test_the_snapshot_covers_every_hosted_method_and_profile(snapshot):
    assert sorted(snapshot) == sorted(HOSTED)
    assert all(sorted(entry["profiles"]) == sorted(PROFILES) for entry in snapshot.values())
    assert snapshot["msfa"]["profiles"]["smoke"]["lr"] == 0.002 and snapshot["xception"]["profiles"]["paper"]["input_size"] == 299


@pytest.mark.parametrize("method", HOSTED)
@pytest.mark.parametrize("profile", PROFILES)
def test_resolved_settings_match_the_snapshot(snapshot, now, method, profile):
    assert canonical(now[method]["profiles"][profile]) == canonical(snapshot[method]["profiles"][profile])


@pytest.mark.parametrize("method", HOSTED)
def test_declarations_match_the_snapshot(snapshot, now, method):
    declared = {key: value for key, value in now[method].items() if key != "profiles"}
    assert canonical(declared) == canonical({key: value for key, value in snapshot[method].items() if key != "profiles"})


if __name__ == "__main__":
    print(json.dumps(resolved(), indent=1))
