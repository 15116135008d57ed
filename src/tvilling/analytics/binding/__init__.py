"""Analytics bound to twin models: configuration, versions, the online engine and its lifecycle."""

from tvilling.analytics.binding.spec import AnalyticSpec, parse_specs

__all__ = ["AnalyticSpec", "parse_specs"]
