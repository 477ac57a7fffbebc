"""``xattr train task=<name>``: dispatch to ``xattr.training.<name>.run(cfg) -> Path``.

``conf/task/<name>.yaml`` holds ``name: <name>`` and the task's hyper-parameters (``cfg.task``).
Each training module writes its checkpoint under ``cfg.paths.cache_dir`` and returns its path.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

from omegaconf import DictConfig

from xattr.errors import XattrError
from xattr.utils.seed import seed_everything

log = logging.getLogger(__name__)


def task_module(name: str):
    """The module ``xattr.training.<name>``; one-line error if it does not exist."""
    if not re.fullmatch(r"[a-z0-9_]+", str(name)):
        raise XattrError(f"task.name={name!r} is not a valid task name; use the name of a conf/task/*.yaml file")
    module_name = f"xattr.training.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise XattrError(f"no training code for task {name!r} (module {module_name} is missing); "
                         "choose a task whose module exists, e.g. task=classifier") from error
    if not callable(getattr(module, "run", None)):
        raise XattrError(f"{module_name} has no run(cfg) function")
    return module


def run(cfg: DictConfig) -> Path:
    """Train what ``cfg.task`` names and return the checkpoint path."""
    task = cfg.get("task")
    if not isinstance(task, DictConfig) or "name" not in task:
        raise XattrError("the train config has no task group; run `xattr train task=classifier` "
                         "(conf/task/<name>.yaml must set `name: <name>`)")
    module = task_module(task.name)
    seed_everything(int(cfg.get("seed", 0)))
    checkpoint = module.run(cfg)
    log.info("task %s finished: checkpoint %s", task.name, checkpoint)
    return checkpoint
