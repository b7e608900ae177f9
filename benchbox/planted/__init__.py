"""Planted truths: checks that the harness finds leakage, subgroup gaps, shortcuts and hollow
explanations where they were planted, and only there (`benchbox validate`; report.py writes validation.md)."""
