"""Evaluation: how a checkpoint writes (perplexity, style, copying, extraction, diversity), the report, stylometry."""
