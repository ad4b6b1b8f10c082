"""Test-speed setting for in-process flow runs.

Prefect 3.9 starts a heartbeat thread with every flow run (crash detection for runs a worker
watches) and joins it at the end, which sleeps up to a second per run. In-process test runs
have no crash detector to feed, so tests that make many runs turn heartbeats off:

    from fast_flows import no_heartbeats      # a fixture: use it as a test argument

Scheduled runs in production keep Prefect's default (a heartbeat every 180 s).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def no_heartbeats(prefect_harness) -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
