import numpy as np

from benchbox.metrics.operating_point import degenerate_operating_point

TRUTH = np.array([1, 1, 0, 0, 0, 0])


def test_every_test_image_above_the_threshold_is_degenerate_and_explained():
    val = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.6])
    test = np.array([0.7, 0.8, 0.75, 0.9, 0.85, 0.72])
    why = degenerate_operating_point(val, test, TRUTH, 0.5)
    assert why.startswith("degenerate operating point: the validation threshold 0.500 puts 100% of test images "
                          "at or above it (sensitivity 1.00, specificity 0.00)")
    assert "on validation median 0.25 (10-90 %: 0.08-0.50)" in why  # numpy's linear quantiles of `val`
    assert why.endswith("on test median 0.78 (10-90 %: 0.71-0.88)")


def test_every_test_image_below_is_degenerate_the_other_way():
    why = degenerate_operating_point([0.5], np.full(6, 0.1), TRUTH, 0.5)
    assert "puts 100% of test images below it (sensitivity 0.00, specificity 1.00)" in why


def test_a_working_threshold_and_undefined_cases_are_not_flagged():
    test = np.array([0.9, 0.3, 0.2, 0.1, 0.6, 0.1])  # one malignant missed, one benign called: 0.5 / 0.75
    assert degenerate_operating_point([0.5], test, TRUTH, 0.5) is None
    assert degenerate_operating_point([0.5], test, np.zeros(6), 0.5) is None  # no malignant test image
    assert degenerate_operating_point([0.5], test, TRUTH, float("nan")) is None
