"""xattr.training: each conf/task/*.yaml builds its trainer by _target_ with exactly its keys; the YAML is the one
source of the trainers' defaults (xattr train, DiffIB's first use, xattr run's first-use classifier)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from xattr.cli import CONF_DIR, main
from xattr.errors import XattrError
from xattr.models import OFFLINE_MODELS
from xattr.tasks.train import build_trainer
from xattr.training._loop import LABEL_KEYS, Trainer, task_defaults


def compose_train(overrides: list[str], tmp_path):
    """``conf/train.yaml`` composed as ``xattr train`` does (Hydra compose), with the folders under tmp_path."""
    base = [f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[*base, *overrides])


def task_yaml(name: str):
    return OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml")


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml")))
def test_task_config_instantiates_its_trainer_with_exactly_its_keys(name, tmp_path):
    cfg = compose_train([f"task={name}"], tmp_path)
    assert cfg.task._target_.startswith("xattr.training."), f"conf/task/{name}.yaml: _target_ outside xattr.training"
    trainer = build_trainer(cfg.task)
    assert isinstance(trainer, Trainer) and trainer.task == name
    keys = set(cfg.task) - set(LABEL_KEYS)
    parameters = inspect.signature(type(trainer)).parameters
    assert set(parameters) == keys, f"{cfg.task._target_} keywords differ from conf/task/{name}.yaml"
    assert all(p.default is inspect.Parameter.empty for p in parameters.values()), "defaults belong in the YAML"
    assert trainer.hparams() == task_defaults(name) == {k: v for k, v in OmegaConf.to_container(cfg.task).items()
                                                        if k in keys}
    assert trainer == type(trainer).from_conf()


@pytest.mark.parametrize("module", ["classifier", "denoiser", "alpha_unet"])
def test_no_python_copy_of_the_yaml_defaults(module):
    assert not hasattr(importlib.import_module(f"xattr.training.{module}"), "DEFAULTS")


def test_classifier_per_model_defaults_come_from_the_yaml():
    trainer = build_trainer(task_yaml("classifier"))
    assert set(OFFLINE_MODELS) <= set(trainer.per_model)
    assert trainer.hparams_for("tiny_cnn") == {"epochs": 5, "batch_size": 64, "lr": 3e-3, "weight_decay": 5e-4,
                                               "train_size": 5000}
    assert trainer.hparams_for("tiny_vit") == {"epochs": 15, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.05,
                                               "train_size": 5000}
    overridden = type(trainer).from_conf(epochs=2, lr=None)
    assert overridden.hparams_for("tiny_vit") == {**trainer.hparams_for("tiny_vit"), "epochs": 2}
    with pytest.raises(XattrError, match="per_model"):
        trainer.hparams_for("vgg16")


def test_null_means_the_yaml_value_except_for_mean_and_std(tmp_path):
    cfg = compose_train(["task=denoiser", "task.steps=null", "task.mean=null", "task.std=null"], tmp_path)
    trainer = build_trainer(cfg.task).filled()
    assert trainer.steps == task_defaults("denoiser")["steps"] and trainer.mean is None and trainer.std is None


def test_unbuildable_task_configs_are_one_line_errors():
    with pytest.raises(XattrError, match="no training code for task 'x'.*cannot be imported"):
        build_trainer(OmegaConf.create({"_target_": "xattr.training.nothere.Trainer", "name": "x"}))
    with pytest.raises(XattrError, match="no training code for task 'x'.*no _target_"):
        build_trainer(OmegaConf.create({"name": "x", "lr": 1}))
    cfg = task_yaml("denoiser")
    cfg.bogus = 1
    with pytest.raises(XattrError, match="cannot build .*DenoiserTrainer.*bogus") as error:
        build_trainer(cfg)
    assert "\n" not in str(error.value)


def test_xattr_train_instantiates_and_runs_the_trainer(tmp_path, capsys):
    args = ["train", "task=denoiser", "task.steps=1", "task.width=4", "task.depth=2", "task.train_size=4",
            "dataset.length=4", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache",
            f"hydra.run.dir={tmp_path}/run"]
    assert main(args) == 0
    assert (tmp_path / "cache" / "denoisers" / "shapes-64-w4d2-imagenet.pt").is_file()
    capsys.readouterr()
    assert main(["train", "task=denoiser", "+task.bogus=1", f"paths.root_dir={tmp_path}",
                 f"hydra.run.dir={tmp_path}/run2"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: task 'denoiser'") and "bogus" in lines[0], lines


def test_cached_denoiser_trained_for_other_steps_is_reported(tmp_path, caplog):
    """The cache name holds no steps: asking for other steps loads the entry as it is, with one warning."""
    import logging

    from xattr.data import ShapesDataset
    from xattr.training.denoiser import load_or_train_denoiser

    data = ShapesDataset("train", image_size=16, length=4, n_samples=None)
    tiny = {"width": 4, "depth": 2, "train_size": 4, "batch_size": 2, "save_every": 10}
    load_or_train_denoiser(data, tmp_path, "shapes", 16, steps=1, **tiny)
    with caplog.at_level(logging.WARNING, logger="xattr.training"):
        load_or_train_denoiser(data, tmp_path, "shapes", 16, steps=1, **tiny)
        assert not [r for r in caplog.records if "trained with" in r.getMessage()]
        load_or_train_denoiser(None, tmp_path, "shapes", 16, steps=4, **tiny)
    warnings = [r.getMessage() for r in caplog.records if "trained with" in r.getMessage()]
    assert len(warnings) == 1 and "steps=1 (asked 4)" in warnings[0]


@pytest.mark.parametrize("task", ["alpha_unet", "contrastive", "denoiser", "path_diffusion", "t2i"])
def test_every_default_ema_forgets_the_random_initialisation(task):
    """``xattr.training._loop.EMA`` starts at the initial weights and has no warm-up, so after ``steps`` updates the
    random init keeps ``ema_decay ** steps`` of the average. At the defaults it must be under 2%: tiny_t2i at decay
    0.999 over 1,000 steps kept 37% and sampled noise. (The denoiser's 0.99 over 400 steps keeps 1.8%.)"""
    from xattr.training._loop import task_defaults

    defaults = task_defaults(task)
    assert defaults["ema_decay"] ** defaults["steps"] < 0.02
