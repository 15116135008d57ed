"""The ``tvilling`` command: thin entry points over the library, one module per capability.

* :mod:`.root` — the root group (``--version``, ``--help``);
* :mod:`.common` — the store/server options, settings, the platform, errors and output every module shares;
* :mod:`.serve` — ``serve``, ``plant``, ``demo``: the long-running processes;
* :mod:`.models` — ``models …``; :mod:`.twins` — ``twins …``;
* :mod:`.ingest` — ``replay`` and ``dead-letters``;
* :mod:`.alarms` — ``alarms …``; :mod:`.analytics` — ``analytics …``; :mod:`.evaluation` — ``eval …``
  (with :mod:`.jobshop` — ``eval jobshop`` — and :mod:`.maintenance_eval` — ``eval maintenance``);
* :mod:`.simulation` — ``sim …``; :mod:`.maintenance` — ``maintenance …``; :mod:`.production` — ``production …``;
* :mod:`.tokens` — ``tokens …`` (API tokens); :mod:`.audit` — ``audit …`` (the audit chain);
* :mod:`.devices` — ``devices …`` (device credentials and ACLs in the MQTT broker).

``main`` (the entry point ``tvilling = "tvilling.cli:main"``) is the root group with every command added.
"""

from __future__ import annotations

from tvilling.cli.alarms import alarms_group
from tvilling.cli.analytics import analytics_group
from tvilling.cli.audit import audit_group
from tvilling.cli.devices import devices_group
from tvilling.cli.evaluation import eval_group
from tvilling.cli.ingest import dead_letters, replay
from tvilling.cli.jobshop import eval_jobshop
from tvilling.cli.maintenance import maintenance_group
from tvilling.cli.maintenance_eval import eval_maintenance
from tvilling.cli.models import models
from tvilling.cli.policies import policies_group
from tvilling.cli.production import production_group
from tvilling.cli.root import main
from tvilling.cli.serve import demo, plant, serve
from tvilling.cli.simulation import sim_group
from tvilling.cli.tokens import tokens_group
from tvilling.cli.twins import twins

for _command in (serve, replay, dead_letters, eval_group, models, twins, alarms_group, analytics_group, plant,
                 demo, sim_group, maintenance_group, production_group, tokens_group,
                 audit_group, devices_group, policies_group):
    main.add_command(_command)
for _command in (eval_jobshop, eval_maintenance):
    eval_group.add_command(_command)

__all__ = ["main"]
