"""Evaluation: metrics, popularity buckets, reports."""
