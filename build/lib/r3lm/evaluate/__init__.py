"""Evaluation: prediction metrics with bootstrap intervals, rationale faithfulness, and the report."""
