"""Ray Train's ``TorchTrainer`` without its placement-group cleaner, which can end a live run.

Ray Train 2.60 starts a detached ``PlacementGroupCleaner`` next to each run's controller. It polls the
controller through the State API and removes the run's placement group once the controller looks dead;
but ``is_actor_alive`` reads a missing State API answer as dead. On a busy machine the State API misses
answers ("Failed to query Ray Train Controller actor state"), the cleaner removes the placement group of
a live run, and Ray destroys its workers ("Destroying worker since its placement group was removed"): the
run fails with a ControllerError, which ``run.max_failures`` does not retry. On a 2-core machine this
ended 4 of about 10 runs of tests/test_train_ray.py's elastic test on 2026-12-04 (the review of ray-project/ray#65447 names the same
flaw). Without the cleaner a run's placement group lives as long as the driver that started it, as
before Ray 2.52; ``omnimask pretrain`` is that driver, locally and as a Ray job.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.train.torch import TorchTrainer

try:  # a private module of Ray's: a Ray without it gets the warning below, not an ImportError
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
except ImportError:  # pragma: no cover (Ray 2.60 has it)
    PlacementGroupCleanerCallback = ()  # isinstance(c, ()) is False for every callback

log = logging.getLogger("omnimask.train")


class Trainer(TorchTrainer):
    """``TorchTrainer`` with Ray Train's default callbacks minus ``PlacementGroupCleanerCallback``."""

    def _create_default_callbacks(self) -> list[Any]:
        callbacks = super()._create_default_callbacks()
        kept = [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]
        if len(kept) == len(callbacks):
            log.warning(
                "Ray Train no longer adds a PlacementGroupCleanerCallback: omnimask's workaround for it "
                "(omnimask/train/ray_trainer.py) does nothing with this Ray version"
            )
        return kept
