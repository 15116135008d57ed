"""Evaluation of detectors on public benchmarks with their published protocols (SKAB, NAB)."""

from tvilling.analytics.evaluation.nab import score_corpus
from tvilling.analytics.evaluation.skab import (
    ChangepointCounts,
    PointCounts,
    changepoint_scores,
    load_skab,
    point_metrics,
)

__all__ = ["ChangepointCounts", "PointCounts", "changepoint_scores", "load_skab", "point_metrics", "score_corpus"]
