"""Use case: the registry deployed a model version (`model.deployed`).

For now the runner records which version it is asked to serve and reports it in
/health/detailed (`reload_pending`); loading, warming and swapping the engine in the
ModelSlot is the hot-reload step, which builds on this record.
"""

from __future__ import annotations

import logging

from contracts import ModelDeployed
from servicekit.logs import log_fields

from ..model_slot import ModelSlot

logger = logging.getLogger("agent_runner.deployments")


class RecordDeployment:
    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot

    async def __call__(self, event: ModelDeployed) -> None:
        desired = self.slot.want(event.model_version, event.gguf_uri, event.sha256, event.alias)
        logger.info(
            "model %s deployed as %s; serving %s until it is loaded",
            desired.model_version, desired.alias, self.slot.engine.model_version,
            extra=log_fields(model_version=desired.model_version, gguf_uri=desired.gguf_uri),
        )
