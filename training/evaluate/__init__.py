"""Downstream evaluation: few-shot classification, embedding-space metrics, plots, report, head."""
