"""Source-adjusted subgroup gaps: a hand-worked pooled point estimate, planted confounding (the raw
gap excludes 0, the adjusted one does not), a planted within-source gap recovered, the class-mix
standardisation (what it changes and what it leaves alone), sources left out with notes and
reasons, and the per-row pooling of NaN differences."""

from __future__ import annotations

import numpy as np
import pytest

from benchbox.errors import BenchboxError
from benchbox.labels import BINARY_CLASSES, CLASSES, MALIGNANT_INDICES
from benchbox.metrics.adjusted import adjusted_gap_replicates, standardise
from benchbox.metrics.bootstrap import draw_resamples
from benchbox.metrics.classification import confusion_metrics, predicted_class
from benchbox.metrics.subgroups import subgroup_replicates
from benchbox.metrics.suite import compute_replicates, prepare

N_RESAMPLES = 200


def planted_binary(cells, seed):
    """A binary method's predictions with exact per-cell error counts.

    cells: (source, group, malignant images, malignant flagged, benign images, benign not flagged);
    the score is 0.8 (flagged) or 0.2. Images of one lesion (1-3 per lesion) share source, group and class.
    """
    rng = np.random.default_rng(seed)
    y, flagged, source, group, lesion = [], [], [], [], []
    for s, g, n_malignant, hits_malignant, n_benign, hits_benign in cells:
        for label, n, hits in ((1, n_malignant, hits_malignant), (0, n_benign, hits_benign)):
            correct = rng.permutation(np.arange(n) < hits)
            y += [label] * n
            flagged += list(np.where(correct, label, 1 - label))
            source += [s] * n
            group += [g] * n
            first = len(set(lesion))
            lesion += [f"L{first + i}" for i in np.repeat(np.arange(n), rng.integers(1, 4, size=n))[:n]]
    score = np.where(np.array(flagged) == 1, 0.8, 0.2)
    proba = np.column_stack([1 - score, score])
    return (np.array(y), proba, np.array(source, dtype=object), np.array(group, dtype=object), np.array(lesion))


def callbacks(task, y, proba, lesions, seed=0):
    """(segment_metrics, confusions, labels, n_rows) over one shared lesion bootstrap, as suite.py builds them."""
    predictions = prepare(task, y, proba, 0.5)
    resamples = draw_resamples(lesions, N_RESAMPLES, seed)

    def segment_metrics(segment, n_segments, names):
        return compute_replicates(predictions, resamples, names, segment, n_segments)

    def confusions(segment, n_segments, kind):
        if kind == "multiclass":
            k, truth, pred = len(CLASSES), predictions.y_true, predicted_class(predictions.proba)
        else:
            k, truth, pred = 2, predictions.malignant, (predictions.score >= predictions.threshold).astype(np.int64)
        sums = resamples.segment_sums(segment, n_segments, truth * k + pred, k * k)
        return sums.reshape(*sums.shape[:2], k, k)

    labels = {"binary": (predictions.malignant, BINARY_CLASSES)}
    if task == "multiclass":
        labels["multiclass"] = (predictions.y_true, CLASSES)
    return segment_metrics, confusions, labels, resamples.n_rows


def class_mix(y, task):
    malignant = np.asarray(y) if task == "binary" else np.isin(y, MALIGNANT_INDICES).astype(np.int64)
    mix = {"binary": np.bincount(malignant, minlength=2) / len(y)}
    if task == "multiclass":
        mix["multiclass"] = np.bincount(y, minlength=len(CLASSES)) / len(y)
    return mix


def adjusted(y, proba, source, group, lesions, metrics, min_size, task="binary", attribute="ita_light_dark"):
    segment_metrics, confusions, labels, n_rows = callbacks(task, y, proba, lesions)
    return adjusted_gap_replicates(attribute, group, source, metrics, segment_metrics, confusions, labels,
                                   class_mix(y, task), min_size, n_rows)


def interval(rows):
    """Percentile 95% interval of the bootstrap rows 1..B."""
    return np.nanpercentile(rows[1 : 1 + N_RESAMPLES], [2.5, 97.5])


# source, group, malignant, malignant flagged, benign, benign not flagged
HAND_WORKED = [
    ("A", "dark", 20, 15, 20, 16),   # sensitivity 0.75, specificity 0.80
    ("A", "light", 30, 27, 30, 24),  # 0.90, 0.80
    ("B", "dark", 25, 20, 25, 20),   # 0.80, 0.80
    ("B", "light", 15, 12, 15, 9),   # 0.80, 0.60
    ("unknown", "dark", 10, 0, 10, 0),  # missing source: left out (it would pull dark down)
    ("A", "unknown", 10, 0, 10, 0),     # missing group: left out (it would pull A's rest down)
]


def test_hand_worked_point_estimate_is_the_weighted_within_source_difference():
    y, proba, source, group, lesions = planted_binary(HAND_WORKED, seed=1)
    result = adjusted(y, proba, source, group, lesions,
                      ["binary.sensitivity", "binary.specificity", "binary.auc"], min_size=10)
    # weights n_g n_r / (n_g + n_r): A 40 * 60 / 100 = 24, B 50 * 30 / 80 = 18.75
    w_a, w_b = 40 * 60 / 100, 50 * 30 / 80
    # sensitivity: d_A = 0.75 - 0.90 = -0.15, d_B = 0.80 - 0.80 = 0 -> (24 * -0.15 + 0) / 42.75 = -0.084211
    sensitivity = result.values["subgroup.ita_light_dark.binary.sensitivity.adjusted_gap.dark"]
    assert sensitivity[0] == pytest.approx((w_a * -0.15 + w_b * 0.0) / (w_a + w_b), abs=1e-12)
    assert sensitivity[0] == pytest.approx(-0.0842105, abs=1e-6)
    # specificity: d_A = 0.80 - 0.80 = 0, d_B = 0.80 - 0.60 = 0.2 -> 18.75 * 0.2 / 42.75 = 0.087719
    specificity = result.values["subgroup.ita_light_dark.binary.specificity.adjusted_gap.dark"]
    assert specificity[0] == pytest.approx(w_b * 0.2 / (w_a + w_b), abs=1e-12)
    # AUC with two score levels is (sensitivity + specificity) / 2: d_A = (1.55 - 1.70) / 2 = -0.075,
    # d_B = (1.60 - 1.40) / 2 = 0.1 (this one comes from segment_metrics, not a confusion matrix)
    auc = result.values["subgroup.ita_light_dark.binary.auc.adjusted_gap.dark"]
    assert auc[0] == pytest.approx((w_a * -0.075 + w_b * 0.1) / (w_a + w_b), abs=1e-12)
    # light is the mirror image: its gap to its rest (dark) is minus dark's, with the same weights
    light = result.values["subgroup.ita_light_dark.binary.sensitivity.adjusted_gap.light"]
    assert light[0] == pytest.approx(-sensitivity[0], abs=1e-12)
    name = "subgroup.ita_light_dark.binary.sensitivity.adjusted_gap.dark"
    assert result.n[name] == 40 + 60 + 50 + 30
    assert result.strata[name] == ["A", "B"]
    assert result.notes[name] == (
        "pooled over 2 of 2 sources"
    )
    assert result.notes["subgroup.ita_light_dark.binary.auc.adjusted_gap.dark"] == "pooled over 2 of 2 sources"
    assert not result.reasons
    assert len(sensitivity) == 1 + N_RESAMPLES + len(set(lesions)) and np.isfinite(sensitivity).all()


# Confounded: A (600 images, 80% dark) is 65% correct for everyone, B (900 images, 20% dark) 90%.
CONFOUNDED = [
    ("A", "dark", 160, 104, 320, 208),
    ("A", "light", 40, 26, 80, 52),
    ("B", "dark", 60, 54, 120, 108),
    ("B", "light", 240, 216, 480, 432),
]


def test_planted_confounding_the_raw_gap_excludes_zero_the_adjusted_gap_does_not():
    y, proba, source, group, lesions = planted_binary(CONFOUNDED, seed=2)
    metrics = ["binary.accuracy", "binary.sensitivity", "binary.auc"]
    segment_metrics, confusions, labels, n_rows = callbacks("binary", y, proba, lesions)
    raw = subgroup_replicates("ita_light_dark", group, metrics, segment_metrics, labels, 30, n_rows, worst_gaps=False)
    result = adjusted_gap_replicates("ita_light_dark", group, source, metrics, segment_metrics, confusions, labels,
                                     class_mix(y, "binary"), 20, n_rows)
    # raw accuracy: dark (312 + 162) / 660 = 0.718 correct, light (78 + 648) / 840 = 0.864
    assert raw.values["subgroup.ita_light_dark.binary.accuracy.gap.dark"][0] == pytest.approx(
        474 / 660 - 726 / 840, abs=1e-12
    )
    for metric in metrics:
        raw_gap = raw.values[f"subgroup.ita_light_dark.{metric}.gap.dark"]
        gap = result.values[f"subgroup.ita_light_dark.{metric}.adjusted_gap.dark"]
        assert interval(raw_gap)[1] < 0, metric
        assert gap[0] == pytest.approx(0.0, abs=1e-12), metric  # within each source dark = light
        low, high = interval(gap)
        assert low < 0 < high, metric
        assert high - low < 0.2, metric  # an informative interval, not one that contains everything


# A true gap: within both sources dark is 0.15 less accurate on both classes; A is mostly dark and worse.
TRUE_GAP = [
    ("A", "dark", 160, 112, 320, 224),   # 0.70
    ("A", "light", 40, 34, 80, 68),      # 0.85
    ("B", "dark", 60, 48, 120, 96),      # 0.80
    ("B", "light", 240, 228, 480, 456),  # 0.95
]


def test_planted_within_source_gap_is_recovered():
    y, proba, source, group, lesions = planted_binary(TRUE_GAP, seed=3)
    metrics = ["binary.accuracy", "binary.sensitivity", "binary.specificity", "binary.auc"]
    segment_metrics, confusions, labels, n_rows = callbacks("binary", y, proba, lesions)
    raw = subgroup_replicates("ita_light_dark", group, ["binary.accuracy"], segment_metrics, labels, 30, n_rows,
                              worst_gaps=False)
    # raw: dark (336 + 144) / 660 = 0.727, light (102 + 684) / 840 = 0.936: the sources inflate the gap
    assert raw.values["subgroup.ita_light_dark.binary.accuracy.gap.dark"][0] == pytest.approx(
        480 / 660 - 786 / 840, abs=1e-12
    )
    assert raw.values["subgroup.ita_light_dark.binary.accuracy.gap.dark"][0] < -0.2
    result = adjusted_gap_replicates("ita_light_dark", group, source, metrics, segment_metrics, confusions, labels,
                                     class_mix(y, "binary"), 20, n_rows)
    for metric in metrics:
        gap = result.values[f"subgroup.ita_light_dark.{metric}.adjusted_gap.dark"]
        assert gap[0] == pytest.approx(-0.15, abs=1e-9), metric
        low, high = interval(gap)
        assert low < -0.15 < high and high < 0, metric
        assert np.nanmean(gap[1 : 1 + N_RESAMPLES]) == pytest.approx(-0.15, abs=0.02), metric


def test_standardising_a_hand_worked_confusion_matrix():
    cm = np.array([[30.0, 10.0], [5.0, 5.0]])  # benign 40 (30 right), malignant 10 (5 right)
    scaled = standardise(cm, np.array([0.5, 0.5]))
    # benign row / 40 * 0.5 = [0.375, 0.125]; malignant row / 10 * 0.5 = [0.25, 0.25]
    np.testing.assert_allclose(scaled, [[0.375, 0.125], [0.25, 0.25]])
    before, after = confusion_metrics(cm, BINARY_CLASSES), confusion_metrics(scaled, BINARY_CLASSES)
    assert before["precision.malignant"] == pytest.approx(5 / 15) and after["precision.malignant"] == pytest.approx(
        0.25 / 0.375
    )
    assert before["accuracy"] == pytest.approx(35 / 50) and after["accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    for unchanged in ("recall.benign", "recall.malignant", "balanced_accuracy"):
        assert after[unchanged] == pytest.approx(before[unchanged])
    # a class absent from the cell stays empty and the mix is renormalised over the classes present
    np.testing.assert_allclose(standardise(np.array([[6.0, 2.0], [0.0, 0.0]]), np.array([0.3, 0.7])),
                               [[0.75, 0.25], [0.0, 0.0]])


def planted_multiclass(group_counts, rest_counts, seed):
    """One source; per true class, of every 10 images: nv 9 right and 1 called mel; mel 6 right and
    4 called nv; every other class 6 right, 3 called nv, 1 called mel. So group and rest share
    every per-class recall but not the class mix (counts are multiples of 10)."""
    nv, mel = CLASSES.index("nv"), CLASSES.index("mel")
    rng = np.random.default_rng(seed)
    y, pred, group = [], [], []
    for name, counts in (("dark", group_counts), ("light", rest_counts)):
        for k, n in enumerate(counts):
            if k == nv:
                pattern = [nv] * 9 + [mel]
            elif k == mel:
                pattern = [mel] * 6 + [nv] * 4
            else:
                pattern = [k] * 6 + [nv] * 3 + [mel]
            y += [k] * n
            pred += pattern * (n // 10)
            group += [name] * n
    y, pred = np.array(y), np.array(pred)
    proba = np.full((len(y), len(CLASSES)), 0.02)
    proba[np.arange(len(y)), pred] = 0.88
    lesions = np.array([f"L{i}" for i in np.repeat(np.arange(len(y)), rng.integers(1, 4, size=len(y)))[: len(y)]])
    return y, proba, np.full(len(y), "s1", dtype=object), np.array(group, dtype=object), lesions


def test_standardisation_removes_the_class_mix_and_leaves_within_class_rates_alone():
    # dark: few nv; light: mostly nv (accuracy 0.9 on nv, 0.6 elsewhere)
    y, proba, source, group, lesions = planted_multiclass([20, 30, 30, 20, 40, 60, 20], [20, 30, 60, 10, 60, 500, 20],
                                                          seed=4)
    standardised = ["mcc", "accuracy", "f1_macro", "f1_weighted", "precision.nv", "f1.mel", "binary.precision"]
    within_class = ["balanced_accuracy", "recall.nv", "recall.mel", "binary.sensitivity", "binary.specificity"]
    segment_metrics, confusions, labels, n_rows = callbacks("multiclass", y, proba, lesions)
    result = adjusted_gap_replicates("ita_light_dark", group, source, standardised + within_class, segment_metrics,
                                     confusions, labels, class_mix(y, "multiclass"), 10, n_rows)
    segment = np.where(group == "dark", 1, 0)  # one source: codes 2 * 0 + is_member
    plain = segment_metrics(segment, 2, standardised + within_class)
    for metric in standardised:
        gap = result.values[f"subgroup.ita_light_dark.{metric}.adjusted_gap.dark"]
        unstandardised = plain[metric][:, 1] - plain[metric][:, 0]
        if not metric.startswith("binary."):  # identical per-class recalls: the standardised cells are equal
            assert gap[0] == pytest.approx(0.0, abs=1e-12), metric
        assert abs(unstandardised[0]) > 0.01, metric
        assert abs(gap[0] - unstandardised[0]) > 0.01, metric
    for metric in within_class:  # within-class rates: unchanged by the rescaling, in every row
        gap = result.values[f"subgroup.ita_light_dark.{metric}.adjusted_gap.dark"]
        np.testing.assert_allclose(gap, plain[metric][:, 1] - plain[metric][:, 0], atol=1e-12, err_msg=metric)
    assert result.values["subgroup.ita_light_dark.balanced_accuracy.adjusted_gap.dark"][0] == pytest.approx(0.0,
                                                                                                             abs=1e-12)
    assert result.notes["subgroup.ita_light_dark.mcc.adjusted_gap.dark"] == (
        "the gap within s1, the only source among the images with a known ita_light_dark; "
        "mcc standardised to the test set's class mix"
    )
    assert result.strata["subgroup.ita_light_dark.mcc.adjusted_gap.dark"] == ["s1"]


def test_small_sources_are_left_out_with_a_note_and_all_small_gives_a_reason():
    cells = HAND_WORKED[:4] + [
        ("C", "dark", 2, 1, 2, 1),          # 4 dark images
        ("C", "light", 20, 15, 20, 15),
        ("D", "dark", 12, 6, 0, 0),         # dark holds only malignant images
        ("D", "light", 10, 5, 10, 5),
    ]
    y, proba, source, group, lesions = planted_binary(cells, seed=5)
    result = adjusted(y, proba, source, group, lesions, ["binary.sensitivity", "binary.auc"], min_size=10)
    name = "subgroup.ita_light_dark.binary.sensitivity.adjusted_gap.dark"
    # the same two sources as the hand-worked test, so the same point estimate
    assert result.values[name][0] == pytest.approx(-3.6 / 42.75, abs=1e-12)
    assert result.strata[name] == ["A", "B"]
    assert result.n[name] == 180
    assert result.notes[name] == (
        "pooled over 2 of 4 sources; C left out: group 'dark' has 4 images, fewer than the minimum 10; "
        "D left out: group 'dark' holds only class 'malignant'"
    )
    small = adjusted(y, proba, source, group, lesions, ["binary.sensitivity"], min_size=45)
    assert np.isnan(small.values[name]).all()
    assert small.n[name] == 0 and small.strata[name] == [] and name not in small.notes
    assert small.reasons[name] == (
        "no source has >= 45 images of both group 'dark' and its rest, each with two classes "
        "(A: 40 and 60; B: 50 and 30; C: 4 and 40; D: 12 and 20)"
    )


def test_a_group_without_a_known_source_gets_a_reason():
    y, proba, source, group, lesions = planted_binary(HAND_WORKED[:4] + [("unknown", "medium", 10, 5, 10, 5)], seed=6)
    result = adjusted(y, proba, source, group, lesions, ["binary.auc"], min_size=10)
    name = "subgroup.ita_light_dark.binary.auc.adjusted_gap.medium"
    assert np.isnan(result.values[name]).all()
    assert result.reasons[name] == "no image of group 'medium' has a known source"


def test_rows_with_nan_differences_are_pooled_over_the_other_sources():
    group = np.array(["dark", "dark", "light", "light", "dark", "dark"] + ["light"] * 6 + ["dark"], dtype=object)
    source = np.array(["A"] * 4 + ["B"] * 8 + ["unknown"], dtype=object)
    malignant = np.array([0, 1] * 6 + [1])
    # cells (segment 2 * source + is_dark): rest A, dark A, rest B, dark B; three replicate rows
    planted = np.array([
        [0.8, 0.7, 0.9, 0.9],        # d_A = -0.1, d_B = 0
        [np.nan, 0.7, 0.9, 0.8],     # d_A undefined: only d_B = -0.1
        [np.nan, 0.7, np.nan, 0.8],  # both undefined
    ])
    seen = []

    def segment_metrics(segment, n_segments, names):
        seen.append((segment.tolist(), n_segments, list(names)))
        return {"binary.auc": planted}

    def confusions(segment, n_segments, task):
        raise AssertionError("binary.auc is not standardised")

    labels = {"binary": (malignant, BINARY_CLASSES)}
    result = adjusted_gap_replicates("tone", group, source, ["binary.auc"], segment_metrics, confusions, labels,
                                     {}, 2, 3)
    assert seen[0] == ([1, 1, 0, 0, 3, 3, 2, 2, 2, 2, 2, 2, -1], 4, ["binary.auc"])
    # weights: A 2 * 2 / 4 = 1, B 2 * 6 / 8 = 1.5; row 0 = (1 * -0.1 + 1.5 * 0) / 2.5
    np.testing.assert_allclose(result.values["subgroup.tone.binary.auc.adjusted_gap.dark"], [-0.04, -0.1, np.nan])
    assert result.n["subgroup.tone.binary.auc.adjusted_gap.dark"] == 12
    # a source whose difference is undefined at the point estimate is left out of every row
    planted = planted[[1, 0, 2]]
    result = adjusted_gap_replicates("tone", group, source, ["binary.auc"], segment_metrics, confusions, labels,
                                     {}, 2, 3)
    name = "subgroup.tone.binary.auc.adjusted_gap.dark"
    np.testing.assert_allclose(result.values[name], [-0.1, 0.0, np.nan])
    assert result.strata[name] == ["B"] and result.n[name] == 8
    assert result.notes[name] == (
        "pooled over 1 of 2 sources; A left out: binary.auc is undefined in group 'dark' or its rest there"
    )


def test_bad_inputs_are_refused():
    y, proba, source, group, lesions = planted_binary(HAND_WORKED[:4], seed=7)
    segment_metrics, confusions, labels, n_rows = callbacks("binary", y, proba, lesions)
    with pytest.raises(BenchboxError, match="2 non-negative shares"):
        adjusted_gap_replicates("tone", group, source, ["binary.sensitivity"], segment_metrics, confusions, labels,
                                {"binary": np.array([0.2, 0.3, 0.5])}, 10, n_rows)
    with pytest.raises(BenchboxError, match="no 'binary' entry"):
        adjusted_gap_replicates("tone", group, source, ["binary.sensitivity"], segment_metrics, confusions, labels,
                                {}, 10, n_rows)
    with pytest.raises(BenchboxError, match="180 group values but 179 source values"):
        adjusted_gap_replicates("tone", group, source[:-1], ["binary.auc"], segment_metrics, confusions, labels,
                                {}, 10, n_rows)
