"""Multi-class metrics against scikit-learn (1e-9) and a hand-worked MCC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.preprocessing import label_binarize

from benchbox.labels import CLASSES
from benchbox.metrics import confusion_matrix, evaluate
from benchbox.metrics.bootstrap import draw_resamples
from benchbox.metrics.classification import confusion_metrics
from benchbox.metrics.suite import compute_replicates, prepare

LABELS = list(range(len(CLASSES)))


def sklearn_reference(y, proba):
    pred = proba.argmax(axis=1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y, pred, labels=LABELS, zero_division=np.nan
    )
    onehot = label_binarize(y, classes=LABELS)
    out = {
        "accuracy": sk.accuracy_score(y, pred),
        "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
        "mcc": sk.matthews_corrcoef(y, pred),
        "f1_macro": sk.f1_score(y, pred, labels=LABELS, average="macro", zero_division=np.nan),
        "f1_weighted": sk.f1_score(y, pred, labels=LABELS, average="weighted", zero_division=np.nan),
        "auc_macro": sk.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=LABELS),
        "auc_weighted": sk.roc_auc_score(y, proba, multi_class="ovr", average="weighted", labels=LABELS),
        "ap_macro": sk.average_precision_score(onehot, proba, average="macro"),
    }
    for i, c in enumerate(CLASSES):
        out[f"precision.{c}"], out[f"recall.{c}"], out[f"f1.{c}"] = precision[i], recall[i], f1[i]
        out[f"support.{c}"] = support[i]
        out[f"auc.{c}"] = sk.roc_auc_score(y == i, proba[:, i])
        out[f"ap.{c}"] = sk.average_precision_score(y == i, proba[:, i])
    return out


@pytest.mark.parametrize("seed, never_predicted", [(0, ()), (1, ()), (2, (3,)), (3, (3, 6)), (4, (0, 2, 6))])
def test_point_estimates_match_sklearn(random_multiclass, make_config, seed, never_predicted):
    y, proba, lesions = random_multiclass(seed, never_predicted=never_predicted)
    assert not np.isin(never_predicted, proba.argmax(axis=1)).any()
    result = evaluate("multiclass", y, proba, lesions, config=make_config(0))
    for name, expected in sklearn_reference(y, proba).items():
        got = result[name]["value"]
        if np.isnan(expected):
            assert np.isnan(got) and result[name]["reason"], name
        else:
            assert got == pytest.approx(expected, abs=1e-9), name


def test_never_predicted_class_has_nan_precision_with_reason_and_zero_f1(random_multiclass, make_config):
    y, proba, lesions = random_multiclass(5, never_predicted=(3,))
    result = evaluate("multiclass", y, proba, lesions, config=make_config(0))
    assert np.isnan(result["precision.df"]["value"])
    assert result["precision.df"]["reason"] == "no image was predicted as df"
    assert result["f1.df"]["value"] == 0.0  # present but never predicted: F1 = 2TP/(2TP+FP+FN) = 0


def test_resample_rows_equal_sklearn_on_the_materialised_resample(random_multiclass):
    """A bootstrap row is exactly the metric of the images repeated by their lesion's draw count."""
    y, proba, lesions = random_multiclass(6, n=200)
    resamples = draw_resamples(lesions, n_resamples=20, seed=3)
    replicates = compute_replicates(prepare("multiclass", y, proba), resamples)
    n_boot = resamples.n_bootstrap
    for row in (1, 7, n_boot, n_boot + 1, n_boot + 5):  # bootstrap rows, then jackknife rows
        if row <= n_boot:
            repeats = resamples.counts[resamples.cluster_index, row - 1].astype(int)
        else:
            repeats = (resamples.cluster_index != row - n_boot - 1).astype(int)
        index = np.repeat(np.arange(len(y)), repeats)
        expected = sklearn_reference(y[index], proba[index])
        for name, value in expected.items():
            got = replicates[name][row, 0]
            if np.isnan(value):
                assert np.isnan(got), (name, row)
            else:
                # rank metrics of resample rows are accumulated in float32 (see ranking.py)
                tolerance = 1e-6 if name.startswith("ap") else 1e-9
                assert got == pytest.approx(value, abs=tolerance), (name, row)


def test_mcc_hand_worked_3x3():
    # rows = truth, columns = prediction
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 7]])
    # s = 20, c = 15, t = (6, 6, 8), p = (7, 5, 8)
    # cov(yt, yp) = c*s - t.p = 300 - (42 + 30 + 64) = 164
    # cov(yp, yp) = s^2 - p.p = 400 - (49 + 25 + 64) = 262; cov(yt, yt) = 400 - (36 + 36 + 64) = 264
    expected = 164 / np.sqrt(262 * 264)
    assert confusion_metrics(cm.astype(float), ["a", "b", "c"])["mcc"] == pytest.approx(expected, abs=1e-12)
    y_true = np.repeat([0, 0, 1, 1, 1, 2, 2], [5, 1, 2, 3, 1, 1, 7])
    y_pred = np.repeat([0, 1, 0, 1, 2, 1, 2], [5, 1, 2, 3, 1, 1, 7])
    assert sk.matthews_corrcoef(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert confusion_matrix(y_true, y_pred, 3).tolist() == cm.tolist()


def test_mcc_is_nan_for_one_true_class_and_zero_for_one_predicted_class():
    one_true = confusion_metrics(np.array([[4.0, 2.0], [0.0, 0.0]]), ["a", "b"])
    one_predicted = confusion_metrics(np.array([[4.0, 0.0], [3.0, 0.0]]), ["a", "b"])
    assert np.isnan(one_true["mcc"])
    assert one_predicted["mcc"] == 0.0


def test_confusion_matrix_matches_sklearn(random_multiclass):
    y, proba, _ = random_multiclass(7, never_predicted=(5,))
    pred = proba.argmax(axis=1)
    assert confusion_matrix(y, pred, 7).tolist() == sk.confusion_matrix(y, pred, labels=LABELS).tolist()


def test_class_absent_from_truth_and_predictions(random_multiclass, make_config):
    """vasc never occurs: its per-class metrics are NaN with reasons and the macro averages skip it."""
    y, proba, lesions = random_multiclass(8, n_classes=7, never_predicted=(6,))
    keep = y != 6
    y, proba, lesions = y[keep], proba[keep], lesions[keep]
    result = evaluate("multiclass", y, proba, lesions, config=make_config(0))
    pred = proba.argmax(axis=1)
    for name in ("precision.vasc", "recall.vasc", "f1.vasc", "auc.vasc", "ap.vasc"):
        assert np.isnan(result[name]["value"]) and result[name]["reason"], name
    assert result["f1_macro"]["value"] == pytest.approx(
        sk.f1_score(y, pred, labels=LABELS, average="macro", zero_division=np.nan), abs=1e-9
    )
    assert result["balanced_accuracy"]["value"] == pytest.approx(sk.balanced_accuracy_score(y, pred), abs=1e-9)
    per_class = [sk.roc_auc_score(y == i, proba[:, i]) for i in range(6)]
    assert result["auc_macro"]["value"] == pytest.approx(np.mean(per_class), abs=1e-9)
    prevalence = np.bincount(y, minlength=6)[:6]
    assert result["auc_weighted"]["value"] == pytest.approx(np.average(per_class, weights=prevalence), abs=1e-9)
