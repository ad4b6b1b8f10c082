"""The embedded OKR store: objectives, key results, check-ins, runs, the alert queue and the publish
outbox in one SQL database, addressed by a SQLAlchemy URL (``sqlite:///okr-sync.db`` by default,
``postgresql+psycopg://...`` at scale). It implements :class:`okrsync.store.OkrStore`.

Modules: ``schema`` (tables and migrations), ``rows`` (rows written and rows read without trusting
them), ``errors`` (database failures as one line), ``store`` (the :class:`SqlStore` class: opening,
writes, reads), ``alert_queue`` and ``outbox`` (its optional parts). The keep/overwrite decision for
manual values is :func:`okrsync.policy.decide`, shared with every publish target.
"""
from __future__ import annotations

from connectors.sql_store.alert_queue import ALERT_CLAIM_TIMEOUT, ALERT_DELIVERY_ATTEMPTS
from connectors.sql_store.schema import MIGRATIONS, WATCH_MIGRATIONS, metadata, schema_version
from connectors.sql_store.store import SqlStore, open_store

__all__ = ["SqlStore", "open_store", "schema_version", "metadata", "MIGRATIONS", "WATCH_MIGRATIONS",
           "ALERT_DELIVERY_ATTEMPTS", "ALERT_CLAIM_TIMEOUT"]
