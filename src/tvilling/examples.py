"""Examples that ``tvilling serve --example NAME`` starts with: their settings and their seed data.

``plant`` is the example production line (``line-1``, 4 machines, as ``tvilling plant`` simulates it) with the
demo's analytics and alarm rules, plus the C-MAPSS ``engine-rul`` analytic for ``tvilling replay …/cmapss``.

>>> from tvilling.config import Settings
>>> names = [a["name"] for a in example_settings(Settings(), "plant").analytics]
>>> "engine-rul" in names
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvilling.config import Settings
from tvilling.core.errors import NotFound

if TYPE_CHECKING:
    from tvilling.app import Platform

#: the examples there are
EXAMPLES = ("plant",)
#: C-MAPSS turbofan engines (``tvilling replay …/cmapss``): remaining life learnt from the fleet's histories
ENGINE_RUL: dict[str, Any] = {"name": "engine-rul", "model": "dtmi:tvilling:datasets:TurbofanEngine",
                              "method": "rul-fleet",
                              "inputs": ["setting1", "setting2", "setting3", *(f"s{i}" for i in range(1, 22))]}


def _check(name: str) -> None:
    if name not in EXAMPLES:
        raise NotFound(f"no example named {name!r}; there are {', '.join(EXAMPLES)}", example=name)


def example_settings(settings: Settings, name: str) -> Settings:
    """The settings plus the example's analytics and alarm rules (those named as configured ones are kept)."""
    from tvilling.demo import DemoOptions, demo_alarm_rules, demo_analytics

    _check(name)
    o = DemoOptions()
    analytics = [*demo_analytics(o.speed, max(10, int(o.learn_s))), ENGINE_RUL]
    have = {a.get("name") for a in settings.analytics}
    have_rules = {r.get("name") for r in settings.alarm_rules}
    return settings.model_copy(update={
        "analytics": [*settings.analytics, *(a for a in analytics if a["name"] not in have)],
        "alarm_rules": [*settings.alarm_rules, *(r for r in demo_alarm_rules() if r["name"] not in have_rules)]})


def seed_example(platform: Platform, name: str) -> int:
    """Register the example's models (the plant's and the data sets') and create its twins where missing;
    returns how many twins were created."""
    from tvilling.demo import DemoOptions, make_plant, seed_twins
    from tvilling.models.builtin import builtin_documents

    _check(name)
    platform.models.add(builtin_documents("datasets"))
    return seed_twins(platform, make_plant(DemoOptions()))
