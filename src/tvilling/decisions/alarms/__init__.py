"""Alarms: rules on reported properties and analytic scores raise alarms with a severity and a lifecycle.

* :mod:`.rules` — rule configuration (threshold with hysteresis and minimum duration, rate of
  change, RUL within a horizon), parsed and checked;
* :mod:`.evaluate` — one rule's state on one twin, on the readings' own timestamps;
* :mod:`.record` — the alarm value and its lifecycle (active → acknowledged → cleared);
* :mod:`.service` — de-duplication, propagation to parent twins, cascading steps;
* :mod:`.shelves` — shelving a twin's alarms (and its subtree's) for a while, with a reason;
* :mod:`.engine` / :mod:`.driver` — twin events in, verdicts out, from a saved feed cursor;
* :mod:`.store` (memory), :mod:`.sqlite_store`, :mod:`.postgres_store` — alarms and their change feed;
* :mod:`.feed` — that change feed as a live change-hub source (items ``kind: "alarm"``).
"""

from tvilling.decisions.alarms.driver import AlarmDriver, build_driver
from tvilling.decisions.alarms.engine import AlarmEngine
from tvilling.decisions.alarms.feed import AlarmFeedSource
from tvilling.decisions.alarms.record import SEVERITIES, STATES, Alarm
from tvilling.decisions.alarms.rules import Rule, parse_rules
from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.alarms.store import AlarmStore, MemoryAlarmStore, open_alarm_store

__all__ = [
    "SEVERITIES",
    "STATES",
    "Alarm",
    "AlarmDriver",
    "AlarmEngine",
    "AlarmFeedSource",
    "AlarmService",
    "AlarmStore",
    "MemoryAlarmStore",
    "Rule",
    "build_driver",
    "open_alarm_store",
    "parse_rules",
]

