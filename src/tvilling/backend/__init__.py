"""One backend factory: every store of a world from one URL, on one SQL plumbing layer.

* :func:`open_backend` — ``memory``, an embedded data directory, or ``postgresql://…``.
* :class:`Backend` — the stores, :meth:`Backend.transaction` across them, :meth:`Backend.fork`.
* :mod:`tvilling.backend.sqlite`, :mod:`tvilling.backend.postgres` — the database each dialect's stores share.
"""

from __future__ import annotations

from tvilling.backend.factory import Backend, backend_url, open_backend, open_settings_backend
from tvilling.backend.stores import DB_FILE, HISTORY_FILE, kind_of, open_store, require_postgres

__all__ = ["DB_FILE", "HISTORY_FILE", "Backend", "backend_url", "kind_of", "open_backend", "open_settings_backend",
           "open_store", "require_postgres"]
