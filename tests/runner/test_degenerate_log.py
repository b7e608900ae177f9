"""A degenerate operating point is said in the run log, not only on the board (issue 18)."""

import logging

from benchbox.runner import job as job_module
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute


def test_a_threshold_that_calls_every_test_image_malignant_is_logged(tiny_synthderm, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(job_module, "youden_threshold", lambda malignant, score: 0.0)  # every score is >= 0
    config = RunConfig(methods=["tiny_binary"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       out=str(tmp_path / "run"), explain_n=0, faithfulness="none", device="cpu")
    with caplog.at_level(logging.WARNING, logger="benchbox.run"):
        assert execute(config, progress=False) == 0
    warnings = [r.getMessage() for r in caplog.records if "degenerate operating point" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("tiny_binary/seed0: degenerate operating point: the "
                                                         "validation threshold 0.000 puts 100% of test images at or above it")
    assert "tiny_binary ⚠" in (tmp_path / "run" / "report" / "README.md").read_text()
