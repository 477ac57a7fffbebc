"""``xattr train task=<name>``: build the trainer ``conf/task/<name>.yaml`` names and run it.

The task config's ``_target_`` is a trainer class (in ``xattr.training``) whose constructor keywords are the
file's other keys, less the label ``name``; it is instantiated with Hydra and then ``trainer.run(cfg)`` trains
with the rest of the composed config (model, dataset, paths, seed, device), writes the checkpoint under
``cfg.paths.cache_dir`` and returns its path.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xattr.errors import XattrError
from xattr.tasks._schema import check_config
from xattr.training import distributed
from xattr.training._loop import LABEL
from xattr.utils.precision import apply_float32_precision, check_device
from xattr.utils.seed import seed_everything

log = logging.getLogger(__name__)


def build_trainer(task: DictConfig):
    """The trainer object ``task`` describes; a one-line ``XattrError`` when it cannot be built."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = task.get("_target_")
    label = task.get(LABEL) or target
    if not target:
        raise XattrError(f"no training code for task {label!r}: conf/task/{label}.yaml has no _target_ "
                         "(the trainer class, e.g. xattr.training.classifier.ClassifierTrainer)")
    node = {k: v for k, v in OmegaConf.to_container(task, resolve=True).items() if k != LABEL}
    try:
        trainer = instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ImportError):
            raise XattrError(f"no training code for task {label!r}: its _target_ {target} cannot be imported; "
                             "choose a task whose trainer exists, e.g. task=classifier") from error
        reason = " ".join(str(cause or error).split())
        raise XattrError(f"task {label!r}: cannot build {target} from its config ({reason})") from error
    if not callable(getattr(trainer, "run", None)):
        raise XattrError(f"{target} (task {label!r}) has no run(cfg) method")
    return trainer


def run(cfg: DictConfig) -> Path:
    """Train what ``cfg.task`` names and return the checkpoint path."""
    check_config(cfg, "train")  # the whole config (types, ranges, no unknown keys) before any work
    check_device(str(cfg.get("device", "cpu")))
    apply_float32_precision(str(cfg.get("precision", "fp32")))
    task = cfg.get("task")
    if not isinstance(task, DictConfig):
        raise XattrError("the train config has no task group; run `xattr train task=classifier` "
                         "(conf/task/<name>.yaml names its trainer by _target_)")
    trainer = build_trainer(task)
    seed_everything(int(cfg.get("seed", 0)))
    checkpoint = trainer.run(cfg)
    if distributed.is_main():  # under torchrun: said once, by the process that wrote the checkpoint
        log.info("task %s finished: checkpoint %s", task.get(LABEL) or task.get("_target_"), checkpoint)
    return checkpoint
