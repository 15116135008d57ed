"""Remaining-useful-life prediction for run-to-failure fleets (C-MAPSS layout rows)."""

from tvilling.analytics.rul.linear import LinearBaseline
from tvilling.analytics.rul.model import RulConfig, RulModel, RulPrediction

__all__ = ["LinearBaseline", "RulConfig", "RulModel", "RulPrediction"]
