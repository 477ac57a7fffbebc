"""The config schema (xattr.tasks._schema): every key of the composed run / train config has a type and a range,
unknown keys (``+key`` or not) are refused naming the closest known key, and all of it before any work.

Each bad input goes through ``xattr.cli.main`` in-process: exit code 2, ONE line ``error: ...``, and on disk
at most what Hydra writes before the job starts (``.hydra/``, ``xattr.log``): no ``status.json``, no chunks,
no results, no ``DONE``. The ids of these cases are the rows of the table in docs/reliability.md.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from run_helpers import error_lines

from xattr.cli import CONF_DIR, main
from xattr.errors import XattrError
from xattr.tasks._schema import RunConfig, TrainConfig, check_config, known_keys

FAST = ["method=saliency", "metric=[deletion]", "metric.deletion.step=0.25", "dataset.n_samples=4", "batch_size=4"]
#: what Hydra itself writes into the run folder before the job function runs
HYDRA_ONLY = {".hydra", "xattr.log", "xattr-train.log"}

# id: (overrides, text the one error line contains)
RUN_CASES = {
    "seed-string": (["seed=abc"], "seed=abc is not valid: expected an integer >= 0"),
    "seed-negative": (["seed=-1"], "seed=-1 is not valid: expected an integer >= 0"),
    "seed-float": (["seed=1.5"], "seed=1.5 is not valid"),
    "seed-too-large": (["seed=4294967296"], "<= 4294967295"),
    "seed-null": (["seed=null"], "seed=null is not valid"),
    "device-unknown": (["device=gpu"], "device=gpu is not valid: expected cpu, cuda, cuda:N or mps"),
    "device-int": (["device=0"], "device=0 is not valid"),
    "precision-unknown": (["precision=fp8"], "precision=fp8 is not an option; use precision=fp32 or precision=tf32 or precision=bf16 or precision=fp16"),
    "loader-workers-negative": (["loader.num_workers=-1"], "loader.num_workers=-1 is not valid: expected an integer >= 0"),
    "loader-pin-unknown": (["loader.pin_memory=maybe"], "loader.pin_memory=maybe is not valid"),
    "loader-unknown-key": (["+loader.workers=2"], "unknown key loader.workers"),
    "target-unknown": (["target=both"], "target=both is not an option; use target=label or target=pred"),
    "target-case": (["target=Label"], "target=Label is not an option"),
    "batch_size-string": (["batch_size=abc"], "batch_size=abc is not valid: expected an integer >= 1"),
    "batch_size-zero": (["batch_size=0"], "batch_size=0 is not valid: expected an integer >= 1"),
    "batch_size-negative": (["batch_size=-4"], "batch_size=-4 is not valid"),
    "batch_size-float": (["batch_size=2.5"], "batch_size=2.5 is not valid"),
    "batch_size-bool": (["batch_size=true"], "batch_size=true is not valid"),
    "batch_size-null": (["batch_size=null"], "batch_size=null is not valid"),
    "resume-maybe": (["resume=maybe"], "resume=maybe is not valid: expected true or false"),
    "resume-no": (["resume=no"], "resume=no is not valid: expected true or false"),
    "resume-int": (["resume=1"], "resume=1 is not valid: expected true or false"),
    "n_figure-string": (["n_figure=abc"], "n_figure=abc is not valid: expected an integer >= 0"),
    "n_figure-negative": (["n_figure=-1"], "n_figure=-1 is not valid"),
    "maps_dtype-int8": (["maps_dtype=int8"], "maps_dtype=int8 is not an option; use maps_dtype=float32 or "
                                             "maps_dtype=float16"),
    "maps_dtype-foo": (["maps_dtype=foo"], "maps_dtype=foo is not an option"),
    "maps_dtype-float64": (["maps_dtype=float64"], "maps_dtype=float64 is not an option"),
    "save_maps-string": (["save_maps=maybe"], "save_maps=maybe is not valid: expected true or false"),
    "save_maps-int": (["save_maps=0"], "save_maps=0 is not valid"),
    "train_split-empty": (["train_split="], "train_split='' is not valid: expected a string of length >= 1"),
    "train_split-int": (["train_split=1"], "train_split=1 is not valid"),
    "names-int": (["names.method=3"], "names.method=3 is not valid: expected a string"),
    "names-unknown-plus": (["+names.methd=x"], "unknown key names.methd (did you mean names.method?)"),
    "paths-int": (["paths.cache_dir=3"], "paths.cache_dir=3 is not valid"),
    "paths-unknown-plus": (["+paths.cachedir=/tmp"], "unknown key paths.cachedir (did you mean paths.cache_dir?)"),
    "missing-key": (["~batch_size"], "batch_size is missing"),
    "unknown-plus": (["+batchsize=2"], "unknown key batchsize (did you mean batch_size?); conf/run.yaml has "
                                       "the keys task, seed, device"),
    "unknown-plus-plus": (["++batchsize=2"], "unknown key batchsize (did you mean batch_size?)"),
    "unknown-plus-no-match": (["+frobnicate=1"], "unknown key frobnicate; conf/run.yaml has the keys"),
    "unknown-no-plus": (["batchsize=2"], "unknown key batchsize (did you mean batch_size?); conf/run.yaml has"),
    "unknown-nested-no-plus": (["dataset.imagesize=32"], "unknown key dataset.imagesize (did you mean "
                                                         "dataset.image_size?); dataset has the keys"),
    "unknown-nested-plus": (["+dataset.imagesize=32"], "dataset 'shapes': unknown key dataset.imagesize (did you "
                                                       "mean dataset.image_size?)"),
    "model-unknown-option-plus": (["+model.widht=8"], "model 'tiny_cnn': unknown key model.widht (did you mean "
                                                      "model.width?)"),
    "model-zoo-option-plus": (["model=resnet50", "+model.image_size=32"], "model 'resnet50': unknown key "
                                                                          "model.image_size"),
    "model-num_classes-zero": (["model.num_classes=0"], "model.num_classes=0 is not valid: expected an integer >= 1"),
    "model-width-string": (["model.width=abc"], "model.width=abc is not valid: expected an integer"),
    "model-pretrained-string": (["model.pretrained=maybe"], "model.pretrained=maybe is not valid"),
    "dataset-image_size-small": (["dataset.image_size=4"], "dataset.image_size=4 is not valid: expected an "
                                                           "integer >= 8"),
    "dataset-image_size-string": (["dataset.image_size=abc"], "dataset.image_size=abc is not valid"),
    "dataset-n_samples-zero": (["dataset.n_samples=0"], "dataset.n_samples=0 is not valid: expected an integer "
                                                        ">= 1 or null"),
    "dataset-seed-string": (["dataset.seed=abc"], "dataset.seed=abc is not valid"),
    "dataset-shard-too-big": (["dataset.num_shards=3", "dataset.shard=3"], "dataset 'shapes': dataset.shard=3 is "
                                                                           "not one of the 3 shards; expected 0..2"),
    "dataset-shard-negative": (["dataset.shard=-1"], "dataset.shard=-1 is not valid: expected an integer >= 0"),
    "dataset-num_shards-zero": (["dataset.num_shards=0"], "dataset.num_shards=0 is not valid: expected an integer "
                                                          ">= 1"),
    "method-option-type": (["method=integrated_gradients", "method.n_steps=abc"],
                           "method 'integrated_gradients': method.n_steps=abc is not valid: expected an integer"),
    "method-option-bool": (["method.abs=maybe"], "method 'saliency': method.abs=maybe is not valid: expected true "
                                                 "or false"),
    "method-unknown-option-plus": (["+method.ab=true"], "method 'saliency': unknown key method.ab (did you mean "
                                                        "method.abs?)"),
    "metric-option-type": (["metric.deletion.step=abc"], "metric 'deletion': metric.deletion.step=abc is not valid: "
                                                         "expected a number"),
    "metric-unknown-option-plus": (["+metric.deletion.stepp=0.1"], "unknown key metric.deletion.stepp (did you "
                                                                   "mean metric.deletion.step?)"),
    "several-at-once": (["batch_size=0", "seed=abc"], "seed=abc is not valid: expected an integer >= 0 and <= "
                                                      "4294967295; batch_size=0 is not valid"),
}


@pytest.fixture()
def no_work(monkeypatch):
    """Building the dataset (the first piece of work of a run) fails the test."""
    from xattr.tasks import run as run_task

    def build_dataset(*args, **kwargs):
        raise AssertionError("the run started working on a bad config")

    monkeypatch.setattr(run_task, "build_dataset", build_dataset)


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_config_is_one_line_before_any_work(case, tmp_path, checkpoint, capsys, no_work):
    overrides, expected = RUN_CASES[case]
    run_dir = tmp_path / "run"
    args = ["run", *FAST, f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}", *overrides]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "+batchsize" not in lines[0] and "To append" not in lines[0]  # no advice the schema refuses
    assert not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= HYDRA_ONLY


TRAIN_CASES = {
    "train-seed-string": (["seed=abc"], "seed=abc is not valid: expected an integer >= 0"),
    "train-device-unknown": (["device=gpu"], "device=gpu is not valid"),
    "train-unknown-plus": (["+epochs=3"], "unknown key epochs; conf/train.yaml has the keys seed, device, precision, paths, "
                                          "task, model, dataset"),
    "train-unknown-no-plus": (["task.epoch=3"], "unknown key task.epoch (did you mean task.epochs?)"),
    "train-task-option-type": (["task.epochs=abc"], "task 'classifier': task.epochs=abc is not valid: expected an "
                                                    "integer >= 1 or null"),
    "train-task-option-range": (["task.epochs=0"], "task.epochs=0 is not valid: expected an integer >= 1 or null"),
    "train-task-lr-range": (["task=denoiser", "task.lr=-1"], "task 'denoiser': task.lr=-1 is not valid: expected "
                                                             "a number > 0"),
    "train-model-option-plus": (["+model.widht=8"], "model 'tiny_cnn': unknown key model.widht"),
    "train-dataset-range": (["dataset.image_size=4"], "dataset.image_size=4 is not valid"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_bad_train_config_is_one_line_before_any_work(case, tmp_path, capsys, monkeypatch):
    from xattr.tasks import train

    def build_trainer(task):
        raise AssertionError("the training started on a bad config")

    monkeypatch.setattr(train, "build_trainer", build_trainer)
    overrides, expected = TRAIN_CASES[case]
    run_dir = tmp_path / "train"
    assert main(["train", f"paths.root_dir={tmp_path}", f"hydra.run.dir={run_dir}", *overrides]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / ".cache").exists()
    assert not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= HYDRA_ONLY


def compose_cfg(config_name: str, overrides: list[str], tmp_path):
    base = [f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*base, *overrides])


def test_schemas_type_exactly_the_top_level_keys(tmp_path):
    """A key added to conf/run.yaml or conf/train.yaml (or a group) needs its type in the schema."""
    assert set(compose_cfg("run", [], tmp_path)) == set(RunConfig.model_fields) == set(known_keys("run"))
    assert set(compose_cfg("train", [], tmp_path)) == set(TrainConfig.model_fields) == set(known_keys("train"))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


VALID = ([[f"experiment={name}"] for name in _options("experiment")]
         + [[f"method={name}"] for name in _options("method")]
         + [[f"model={name}"] for name in _options("model")]
         + [[f"dataset={name}"] for name in _options("dataset")]
         + [[f"metric=[{name}]"] for name in _options("metric")]
         + [["debug=smoke"], ["target=pred", "maps_dtype=float16", "resume=true", "save_maps=false", "n_figure=0",
                              "names.method=sal", "device=cuda:0", "seed=4294967295"]])


@pytest.mark.parametrize("overrides", VALID, ids=lambda o: " ".join(o))
def test_every_shipped_config_passes_the_schema(overrides, tmp_path):
    check_config(compose_cfg("run", overrides, tmp_path), "run")


def test_hydra_node_is_left_to_hydra(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="run", overrides=[f"paths.root_dir={tmp_path}"], return_hydra_config=True)
    assert "hydra" in cfg
    check_config(cfg, "run")


@pytest.mark.parametrize("task", _options("task"))
def test_every_task_config_passes_the_schema(task, tmp_path):
    check_config(compose_cfg("train", [f"task={task}"], tmp_path), "train")


def test_the_schema_runs_before_the_run_folder_is_touched(tmp_path, checkpoint):
    """``run(cfg, out_dir)`` from Python refuses a bad config before it creates the folder."""
    from run_helpers import make_cfg

    from xattr.tasks import run as run_task

    with pytest.raises(XattrError, match="resume=maybe is not valid"):
        run_task.run(make_cfg(tmp_path, checkpoint, "resume=maybe"), out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
