"""Value agreement of benchbox with the libraries a researcher would use instead, on the same arrays.

Each function returns `Row`s: one quantity, benchbox's value, the peer's, the largest absolute
difference and the tolerance it must meet. Where the definitions differ the row says how, and the
peer's value is converted to benchbox's definition (`converted`) so that the difference is still
checked, not waved through. Peers are imported inside the function that uses them, so this module
(and its test) needs only what is installed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchbox.labels import CLASSES, ISIC_COLUMNS
from benchbox.metrics.bootstrap import draw_resamples
from benchbox.metrics.ranking import rank_statistics
from benchbox.metrics.suite import compute_replicates, prepare

EXACT = 1e-9  # two float64 computations of the same formula
RANK_TOL = 1e-7  # AUC / AP from sorted running sums vs scikit-learn's curves


@dataclass
class Row:
    section: str
    peer: str
    quantity: str
    benchbox: float
    peer_value: float
    diff: float  # max |benchbox - peer| (after conversion when the definitions differ)
    tolerance: float
    note: str = ""

    @property
    def agrees(self) -> bool:
        return bool(np.isfinite(self.diff) and self.diff <= self.tolerance)

    @property
    def status(self) -> str:
        if self.agrees:
            return "agrees" if not self.note.startswith("definition differs") else "definition differs; checked"
        return "DISAGREES"


def compare(section: str, peer: str, quantity: str, ours, theirs, tolerance: float, note: str = "",
            converted=None, peer_definition=None) -> Row:
    """A row for arrays (or scalars) `ours` and `theirs`.

    What is checked: |ours - theirs|; or, where the definitions differ, |ours - converted| (the
    peer's value converted to benchbox's definition), or |theirs - peer_definition| (the peer's
    definition recomputed independently, when no conversion exists).
    """
    ours_arr, theirs_arr = np.atleast_1d(np.asarray(ours, float)), np.atleast_1d(np.asarray(theirs, float))
    left, right = ours_arr, theirs_arr
    if converted is not None:
        right = np.atleast_1d(np.asarray(converted, float))
    elif peer_definition is not None:
        left = np.atleast_1d(np.asarray(peer_definition, float))
    both_nan = np.isnan(left) & np.isnan(right)
    diff = float(np.max(np.where(both_nan, 0.0, np.abs(left - right)))) if left.size else 0.0
    shown = (lambda a: float(a[0]) if a.size == 1 else float(np.nanmean(a)))
    return Row(section, peer, quantity, shown(ours_arr), shown(theirs_arr), diff, tolerance, note)


def point_values(task: str, y_true: np.ndarray, proba: np.ndarray, threshold: float | None = None,
                 segment: np.ndarray | None = None, n_segments: int = 1) -> dict[str, np.ndarray]:
    """benchbox's point estimates (row 0, no resamples) of every metric of `task`, per segment."""
    predictions = prepare(task, y_true, proba, threshold)
    resamples = draw_resamples(np.arange(len(y_true)), 0, 0)
    values = compute_replicates(predictions, resamples, segment=segment, n_segments=n_segments)
    return {name: value[0] for name, value in values.items()}


def sklearn_rows(y_true: np.ndarray, proba: np.ndarray) -> list[Row]:
    """Every benchbox classification metric that scikit-learn also computes, multiclass and malignant-vs-benign."""
    from sklearn import metrics as skm

    ours = {k: float(v[0]) for k, v in point_values("multiclass", y_true, proba).items()}
    k = len(CLASSES)
    y_pred = proba.argmax(axis=1)
    labels = np.arange(k)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=np.nan)
    s = "values: scikit-learn " + __import__("sklearn").__version__
    rows = [
        compare(s, "accuracy_score", "accuracy", ours["accuracy"], skm.accuracy_score(y_true, y_pred), EXACT),
        compare(s, "balanced_accuracy_score", "balanced_accuracy", ours["balanced_accuracy"],
                skm.balanced_accuracy_score(y_true, y_pred), EXACT),
        compare(s, "matthews_corrcoef", "mcc", ours["mcc"], skm.matthews_corrcoef(y_true, y_pred), EXACT),
        compare(s, "f1_score(average='macro')", "f1_macro", ours["f1_macro"],
                skm.f1_score(y_true, y_pred, labels=labels, average="macro"), EXACT),
        compare(s, "f1_score(average='weighted')", "f1_weighted", ours["f1_weighted"],
                skm.f1_score(y_true, y_pred, labels=labels, average="weighted"), EXACT),
        compare(s, "precision_recall_fscore_support", "precision.<class> (7 classes)",
                [ours[f"precision.{c}"] for c in CLASSES], precision, EXACT),
        compare(s, "precision_recall_fscore_support", "recall.<class> (7 classes)",
                [ours[f"recall.{c}"] for c in CLASSES], recall, EXACT),
        compare(s, "precision_recall_fscore_support", "f1.<class> (7 classes)",
                [ours[f"f1.{c}"] for c in CLASSES], f1, EXACT),
        compare(s, "precision_recall_fscore_support", "support.<class> (7 classes)",
                [ours[f"support.{c}"] for c in CLASSES], support, EXACT),
        compare(s, "roc_auc_score(y == c, p_c)", "auc.<class> (7 classes)",
                [ours[f"auc.{c}"] for c in CLASSES],
                [skm.roc_auc_score(y_true == i, proba[:, i]) for i in range(k)], RANK_TOL),
        compare(s, "roc_auc_score(multi_class='ovr', average='macro')", "auc_macro", ours["auc_macro"],
                skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels), RANK_TOL),
        compare(s, "roc_auc_score(multi_class='ovr', average='weighted')", "auc_weighted", ours["auc_weighted"],
                skm.roc_auc_score(y_true, proba, multi_class="ovr", average="weighted", labels=labels), RANK_TOL),
        compare(s, "average_precision_score(y == c, p_c)", "ap.<class> (7 classes)",
                [ours[f"ap.{c}"] for c in CLASSES],
                [skm.average_precision_score(y_true == i, proba[:, i]) for i in range(k)], RANK_TOL),
        compare(s, "average_precision_score(one-hot, average='macro')", "ap_macro", ours["ap_macro"],
                skm.average_precision_score(np.eye(k)[y_true], proba, average="macro"), RANK_TOL),
        compare(s, "log_loss(labels=0..6)", "nll", ours["nll"], skm.log_loss(y_true, proba, labels=labels), EXACT),
    ]
    brier_sk = skm.brier_score_loss(y_true, proba, labels=labels)
    rows.append(compare(s, "brier_score_loss (multiclass)", "brier", ours["brier"], brier_sk, EXACT))
    malignant, score = prepare("multiclass", y_true, proba).malignant, prepare("multiclass", y_true, proba).score
    flagged = (score >= 0.5).astype(int)
    b = "malignant = mel+bcc+akiec probability >= 0.5: "
    rows += [
        compare(s, b + "accuracy_score", "binary.accuracy", ours["binary.accuracy"],
                skm.accuracy_score(malignant, flagged), EXACT),
        compare(s, b + "recall_score", "binary.sensitivity", ours["binary.sensitivity"],
                skm.recall_score(malignant, flagged), EXACT),
        compare(s, b + "recall_score(pos_label=0)", "binary.specificity", ours["binary.specificity"],
                skm.recall_score(malignant, flagged, pos_label=0), EXACT),
        compare(s, b + "precision_score", "binary.precision", ours["binary.precision"],
                skm.precision_score(malignant, flagged), EXACT),
        compare(s, b + "f1_score", "binary.f1", ours["binary.f1"], skm.f1_score(malignant, flagged), EXACT),
        compare(s, "roc_auc_score (malignancy score)", "binary.auc", ours["binary.auc"],
                skm.roc_auc_score(malignant, score), RANK_TOL),
        compare(s, "average_precision_score (malignancy score)", "binary.ap", ours["binary.ap"],
                skm.average_precision_score(malignant, score), RANK_TOL),
        compare(s, "brier_score_loss (malignancy score)", "binary.brier", ours["binary.brier"],
                skm.brier_score_loss(malignant, score), EXACT),
        compare(s, "log_loss (malignancy score)", "binary.nll", ours["binary.nll"], skm.log_loss(malignant, score), EXACT),
    ]
    fpr, tpr, _ = skm.roc_curve(malignant, score)
    for name, level in (("sens_at_spec80", 0.8), ("sens_at_spec90", 0.9), ("sens_at_spec95", 0.95)):
        rows.append(compare(s, f"roc_curve: max TPR where 1 - FPR >= {level}", f"binary.{name}",
                            ours[f"binary.{name}"], tpr[(1 - fpr) >= level - 1e-9].max(), EXACT))
    raw = isic_style_partial_auc(malignant, score, 0.8)
    rows.append(compare(
        s, "roc_curve + auc (ISIC-challenge raw pAUC above 80% sensitivity)", "binary.pauc_sens80",
        ours["binary.pauc_sens80"], raw[0], 1e-9,
        "definition differs: the raw area under the ROC segment with TPR >= 0.8 includes the rectangle "
        "0.8 x (1 - FPR at TPR 0.8); benchbox reports only the area above TPR 0.8, divided by 0.2 "
        "(1 = perfect); converted = (raw - 0.8 (1 - FPR0)) / 0.2",
        converted=(raw[0] - 0.8 * (1 - raw[1])) / 0.2))
    return rows


def isic_style_partial_auc(positive: np.ndarray, score: np.ndarray, sensitivity: float) -> tuple[float, float]:
    """(raw area under the ROC curve where TPR >= sensitivity, the interpolated FPR at that TPR), with
    scikit-learn's roc_curve and auc, as isic-challenge-scoring's `auc_above_sensitivity` does."""
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=False)
    i = int(tpr.searchsorted(sensitivity, side="left"))
    fpr0 = float(np.interp(sensitivity, tpr[i - 1: i + 1], fpr[i - 1: i + 1]))
    return float(auc(np.insert(fpr[i:], 0, fpr0), np.insert(tpr[i:], 0, sensitivity))), fpr0


def per_class_pauc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """benchbox's normalised partial AUC above 80% sensitivity of each class, one-vs-rest."""
    resamples = draw_resamples(np.arange(len(y_true)), 0, 0)
    return np.array([rank_statistics(resamples, proba[:, i], y_true == i, ("pauc_sens80",))["pauc_sens80"][0, 0]
                     for i in range(proba.shape[1])])


def truth_csv(image_ids: np.ndarray, y_true: np.ndarray) -> str:
    """An ISIC 2018 Task 3 ground-truth CSV (image,MEL,...,VASC, one-hot floats) of benchbox class indices."""
    onehot = np.eye(len(CLASSES))[y_true]
    order = [CLASSES.index(c.lower()) for c in ISIC_COLUMNS]
    frame = pd.DataFrame(onehot[:, order], columns=list(ISIC_COLUMNS))
    frame.insert(0, "image", image_ids)
    return frame.to_csv(index=False)


def isic_rows(image_ids: np.ndarray, y_true: np.ndarray, proba: np.ndarray) -> list[Row]:
    """benchbox vs isic-challenge-scoring on benchbox's own exported submission (runner.job.isic_submission).

    The scorer's `parse_csv` calls `DataFrame.applymap`, which pandas 3 removed; it is aliased to
    `DataFrame.map` (pandas' own rename of the same method) for the call, nothing else is changed.
    """
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.metrics import recall_score as skm_recall

    from benchbox.data.isic2018 import officially_scored
    from benchbox.labels import CLASSES as NAMES
    from benchbox.runner.job import isic_submission

    frame = pd.DataFrame({"image_id": image_ids, "split": "test"})
    for i, c in enumerate(NAMES):
        frame[f"p_{c}"] = proba[:, i]
    submission = isic_submission(frame).to_csv(index=False)
    shimmed = not hasattr(pd.DataFrame, "applymap")
    if shimmed:
        pd.DataFrame.applymap = pd.DataFrame.map
    try:
        scored = ClassificationScore.from_stream(io.StringIO(truth_csv(image_ids, y_true)), io.StringIO(submission),
                                                 ClassificationMetric.BALANCED_ACCURACY)
    finally:
        if shimmed:
            del pd.DataFrame.applymap
    version = __import__("importlib.metadata").metadata.version("isic-challenge-scoring")
    s = f"values: isic-challenge-scoring {version} (exported submission)"
    per_cat = scored.per_category  # rows: ISIC columns
    order = [CLASSES.index(c.lower()) for c in ISIC_COLUMNS]
    keep = officially_scored(image_ids)
    n_left = int((~keep).sum())
    all_values = point_values("multiclass", y_true, proba)
    official = point_values("multiclass", y_true[keep], proba[keep])
    shim = " pandas 3: `applymap` aliased to `DataFrame.map` for the call." if shimmed else ""
    rows = [
        compare(s, "aggregate.balanced_accuracy", "balanced_accuracy, all images", all_values["balanced_accuracy"][0],
                scored.aggregate["balanced_accuracy"], EXACT,
                f"definition differs: the scorer gives {n_left} image(s) weight 0 (ISIC_0035068, hard-coded in its "
                "load_csv.parse_truth_csv) and this row keeps them; checked instead: the scorer equals scikit-learn's "
                "balanced_accuracy_score with sample_weight 0 for them." + shim,
                peer_definition=balanced_accuracy_score(y_true, proba.argmax(axis=1), sample_weight=keep.astype(float))),
        compare(s, "aggregate.balanced_accuracy", "balanced_accuracy, official scoring (isic2018 adapter rule)",
                official["balanced_accuracy"][0], scored.aggregate["balanced_accuracy"], EXACT,
                "argmax ties: the scorer calls a tied row 'undecided', benchbox takes the lowest class index "
                "(no ties in these continuous probabilities)"),
        compare(s, "per_category.auc", "auc.<class>, official scoring (7 classes)",
                [official[f"auc.{c.lower()}"][0] for c in ISIC_COLUMNS], per_cat["auc"].to_numpy(), RANK_TOL),
        compare(s, "macro_average.auc", "auc_macro, official scoring", official["auc_macro"][0],
                scored.macro_average["auc"], RANK_TOL),
        compare(s, "per_category.ap", "ap.<class>, official scoring (7 classes)",
                [official[f"ap.{c.lower()}"][0] for c in ISIC_COLUMNS], per_cat["ap"].to_numpy(), RANK_TOL),
    ]
    thresholded = [skm_recall(y_true[keep] == i, proba[keep, i] > 0.5) for i in order]
    rows.append(compare(
        s, "per_category.sensitivity", "recall.<class>, official scoring (7 classes)",
        [official[f"recall.{c.lower()}"][0] for c in ISIC_COLUMNS], per_cat["sensitivity"].to_numpy(), EXACT,
        "definition differs: the scorer counts p_c > 0.5 as a prediction of c (one-vs-rest at 0.5), benchbox's "
        "recall counts the arg-max class; checked instead: the scorer equals scikit-learn's recall of p_c > 0.5",
        peer_definition=thresholded))
    ours_pauc = per_class_pauc(y_true[keep], proba[keep])[order]
    raw = np.array([isic_style_partial_auc(y_true[keep] == i, proba[keep, i], 0.8) for i in order])
    rows.append(compare(
        s, "per_category.auc_sens_80 (raw)", "pauc_sens80 per class, official scoring (7 classes)",
        ours_pauc, per_cat["auc_sens_80"].to_numpy(), 1e-9,
        "definition differs: the scorer's raw area (ROC segment with TPR >= 0.8, including the rectangle "
        "0.8 x (1 - FPR0) under it) vs benchbox's area above TPR 0.8 / 0.2; converted = (raw - 0.8 (1 - FPR0)) / 0.2",
        converted=(per_cat["auc_sens_80"].to_numpy() - 0.8 * (1 - raw[:, 1])) / 0.2))
    return rows


def fairlearn_rows(y_true: np.ndarray, proba: np.ndarray, groups: np.ndarray, subgroup_values: dict) -> list[Row]:
    """Per-group values of benchbox's subgroup metrics (`evaluate(..., attributes={"site": groups})`) vs MetricFrame."""
    import fairlearn
    from fairlearn.metrics import MetricFrame

    frame = metric_frame(MetricFrame, y_true, proba, groups)
    s = f"values: fairlearn {fairlearn.__version__} MetricFrame (6 groups)"
    names = sorted(set(groups))
    rows = []
    for metric in SUBGROUP_METRICS:
        ours = [subgroup_values[f"subgroup.site.{metric}.{g}"]["value"] for g in names]
        rows.append(compare(s, f"by_group[{metric!r}]", f"subgroup.site.{metric}.<group>", ours,
                            frame.by_group[metric].loc[names].to_numpy(), RANK_TOL if "auc" in metric else EXACT))
    return rows


SUBGROUP_METRICS = ("balanced_accuracy", "mcc", "binary.auc", "binary.sensitivity", "binary.specificity")


def metric_frame(MetricFrame, y_true, proba, groups, n_boot=None, random_state=None):
    """fairlearn's MetricFrame of benchbox's five subgroup metrics, defined with scikit-learn.

    MetricFrame passes one y_pred per metric; the multiclass and malignancy views travel in
    one 2-column array (arg-max class, malignancy score) and each metric reads its column.
    """
    from sklearn import metrics as skm

    p = prepare("multiclass", y_true, proba)
    y = np.column_stack([y_true, p.malignant]).astype(float)
    pred = np.column_stack([proba.argmax(axis=1), p.score])
    metrics = {
        "balanced_accuracy": lambda t, q: skm.balanced_accuracy_score(t[:, 0], q[:, 0]),
        "mcc": lambda t, q: skm.matthews_corrcoef(t[:, 0], q[:, 0]),
        "binary.auc": lambda t, q: skm.roc_auc_score(t[:, 1], q[:, 1]),
        "binary.sensitivity": lambda t, q: skm.recall_score(t[:, 1], q[:, 1] >= 0.5),
        "binary.specificity": lambda t, q: skm.recall_score(t[:, 1], q[:, 1] >= 0.5, pos_label=0),
    }
    kwargs = {} if n_boot is None else {"n_boot": n_boot, "ci_quantiles": [0.025, 0.975], "random_state": random_state}
    return MetricFrame(metrics=metrics, y_true=pd.DataFrame(y), y_pred=pd.DataFrame(pred),
                       sensitive_features=pd.Series(groups, name="site"), **kwargs)
