"""`xattr report`: paired differences against a reference method on the same images; incomplete folders named
(and refused with --strict); runs of the same images not pooled unless --pool."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from run_helpers import dead_pid

from xattr.cli import main
from xattr.errors import XattrError
from xattr.runs import RunFolder
from xattr.tasks.report import paired_differences, paired_table


def _per_sample(values: dict[str, list[float]], metric: str = "mnim.mnim") -> pd.DataFrame:
    rows = [{"model": "tiny_cnn", "dataset": "shapes", "metric": metric, "id": f"img-{i}", "method": method,
             "value": v} for method, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_paired_differences_match_by_image_and_give_standard_errors():
    frame = _per_sample({"diffib": [0.1, 0.2, 0.4, 0.5], "saliency": [0.9, 0.3, 0.4, 0.8]})
    frame = frame.sample(frac=1.0, random_state=0)  # order must not matter: rows are matched by id
    out = paired_differences(frame, "diffib").set_index("method").loc["saliency"]
    d = pd.Series([0.1 - 0.9, 0.2 - 0.3, 0.0, 0.5 - 0.8])
    assert out["n"] == 4
    assert out["diff"] == pytest.approx(d.mean())
    assert out["sem"] == pytest.approx(d.std(ddof=1) / 2)
    assert out["lower"] == pytest.approx(0.75) and out["higher"] == 0.0
    table = paired_table(paired_differences(frame, "diffib"))
    assert list(table["method"]) == ["saliency"] and "(0% / 75%)" in table["mnim.mnim"].iloc[0]


def test_paired_differences_skip_unmatched_images_and_name_a_bad_reference():
    frame = _per_sample({"diffib": [0.1, 0.2], "iba": [0.3]})
    assert int(paired_differences(frame, "diffib")["n"].iloc[0]) == 1
    with pytest.raises(XattrError, match="--paired bogus"):
        paired_differences(frame, "bogus")


# --------------------------------------------------------------------------- skipped folders, --strict, --pool

NAMES = {"method": "saliency", "model": "tiny_cnn", "dataset": "shapes"}


def _cfg(**changes):
    cfg = OmegaConf.create({"dataset": {"_target_": "xattr.data.ShapesDataset", "n_samples": 4, "seed": 0},
                            "batch_size": 4, "target": "label", "seed": 0, "method": {"_target_": "M"},
                            "metric": {"deletion": {"_target_": "X"}}, "model": {"name": "tiny_cnn"},
                            "names": NAMES})
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def _taken(path: Path, **changes) -> RunFolder:
    """A folder a run has taken (manifest written), as the run task leaves it before its first batch."""
    folder = RunFolder(path)
    assert folder.open(resume=False)
    folder.start(_cfg(**changes), [0, 1, 2, 3], NAMES, n_batches=1)
    return folder


def _finished(path: Path, mean: float = 0.5, **changes) -> Path:
    """A complete run folder (4 images) with one summary row, written through RunFolder."""
    folder = _taken(path, **changes)
    (path / "summary.csv").write_text(f"method,model,dataset,metric,mean,std,n\n"
                                      f"saliency,tiny_cnn,shapes,deletion,{mean},0.1,4\n")
    folder.complete(done=4, total=4, names=NAMES)
    return path


def _failed(path: Path) -> None:
    folder = _taken(path)
    with pytest.raises(RuntimeError), folder.recording(NAMES):
        folder.write_status(state="running", done=4, total=8, names=NAMES)
        raise RuntimeError("CUDA out of memory\nmore text")


def _interrupted(path: Path) -> None:
    folder = _taken(path)
    with pytest.raises(KeyboardInterrupt), folder.recording(NAMES):
        folder.write_status(state="running", done=4, total=8, names=NAMES)
        raise KeyboardInterrupt


def _running(path: Path) -> None:  # a live run: this process wrote the status of its last finished batch
    _taken(path).write_status(state="running", done=4, total=8, names=NAMES)


def _with_status(path: Path, **changes) -> None:
    status = json.loads((path / "status.json").read_text())
    (path / "status.json").write_text(json.dumps({**status, **changes}))


def _killed(path: Path) -> None:  # SIGKILL: the status of the last finished batch stays, its process is gone
    _running(path)
    _with_status(path, pid=dead_pid())


def _elsewhere(path: Path) -> None:  # running on another node (a shared file system): not checkable here
    _running(path)
    _with_status(path, host="node-elsewhere")


def _older_running(path: Path) -> None:  # a status written before status.json recorded its process
    _running(path)
    status = json.loads((path / "status.json").read_text())
    (path / "status.json").write_text(json.dumps({k: v for k, v in status.items()
                                                  if k not in ("pid", "host", "heartbeat", "boot_id", "pid_namespace")}))


def _chunks_only(path: Path) -> None:  # killed before the first status was written
    (path / "partial").mkdir(parents=True)


def _job(path: Path, tmp_path: Path, checkpoint: Path, bad: str) -> None:  # a real job that stops with exit 2
    assert main(["run", "debug=smoke", "method=saliency", f"model.checkpoint={checkpoint}",
                 f"paths.root_dir={tmp_path}", f"hydra.run.dir={path}", bad]) == 2


def _failed_job(path: Path, tmp_path: Path, checkpoint: Path) -> None:  # fails while it runs
    _job(path, tmp_path, checkpoint, "dataset.length=0")


def _refused_job(path: Path, tmp_path: Path, checkpoint: Path) -> None:  # refused by the config schema
    _job(path, tmp_path, checkpoint, "dataset.n_samples=0")


# how the folder was left: (make it, the line the report prints for it)
SKIPPED = {
    "failed": (_failed, "failed at 4/8 samples: RuntimeError: CUDA out of memory"),
    "failed_job_of_a_sweep": (_failed_job, "failed: XattrError: dataset shapes (split=test, n_samples=4) has no "
                                           "samples; point paths.data_dir at a filled folder or raise dataset.n_samples "
                                           "/ dataset.length"),
    "refused_job_of_a_sweep": (_refused_job, "never started: xattr refused its config before any work (the command "
                                             "printed why; the config is in .hydra/config.yaml)"),
    "interrupted": (_interrupted, "interrupted at 4/8 samples; continue it with `xattr run resume=true "
                                  "hydra.run.dir={path}` and its overrides"),
    "running": (_running, "running at 4/8 samples: process {pid} on {host} is alive (last heartbeat {heartbeat})"),
    "killed": (_killed, "killed at 4/8 samples: process {pid} on {host} is gone; resume it with `xattr run "
                        "resume=true hydra.run.dir={path}` and its overrides"),
    "running_on_another_host": (_elsewhere, "running at 4/8 samples: process {pid} on node-elsewhere, which cannot "
                                            "be checked from {here}; last heartbeat {heartbeat}; if that is long "
                                            "ago it was killed: resume it with `xattr run resume=true "
                                            "hydra.run.dir={path}` and its overrides"),
    "running_older_status": (_older_running, "running at 4/8 samples (still running, or killed before it could "
                                             "record why)"),
    "no_status": (_chunks_only, "no DONE and no status.json"),
}


@pytest.mark.parametrize("case", list(SKIPPED))
def test_report_names_each_incomplete_folder_and_strict_refuses(case, tmp_path, checkpoint, capsys):
    make, why = SKIPPED[case]
    sweep = tmp_path / "sweep"
    _finished(sweep / "0-saliency")
    skipped = sweep / "1-saliency"
    make(skipped, tmp_path, checkpoint) if make in (_failed_job, _refused_job) else make(skipped)
    capsys.readouterr()
    status = RunFolder(skipped).status() or {}
    line = f"skipped {skipped}: {why.format(path=skipped, here=socket.gethostname(), **status)}"

    assert main(["report", str(sweep)]) == 0
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [line]
    assert pd.read_csv(sweep / "report.csv")["n_runs"].tolist() == [1]

    out = tmp_path / "strict"
    assert main(["report", str(sweep), "--strict", "--out", str(out)]) == 2
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [
        line, "error: --strict: 1 run folder not complete (named above); resume or remove them, or leave out --strict"]
    assert not out.exists()


def _legacy(path: Path, seed: int) -> Path:
    """A complete folder written before manifest.json: its config only in .hydra/config.yaml."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(_cfg(seed=seed)))
    (path / "summary.csv").write_text("method,model,dataset,metric,mean,std,n\nsaliency,tiny_cnn,shapes,deletion,0.5,0.1,4\n")
    (path / "DONE").write_text("complete\n")
    return path


# three runs in one row: (make run i, how the refusal says to keep them apart, the key that does)
POOLED = {
    "reruns_of_one_config": (lambda path, i: _finished(path, mean=0.1 * i),
                             "their configs are the same (re-runs of one job): report one of them", None),
    "seeds_on_the_same_images": (lambda path, i: _finished(path, seed=i),
                                 "their configs differ in seed: pass --by seed to keep them apart", "seed"),
    "method_settings_on_the_same_images": (lambda path, i: _finished(path, **{"method.beta": i}),
                                           "their configs differ in method.beta: pass --by method.beta to keep "
                                           "them apart", "method.beta"),
    "folders_older_than_the_manifest": (_legacy, "their configs differ in seed: pass --by seed to keep them apart",
                                        "seed"),
}


@pytest.mark.parametrize("case", list(POOLED))
def test_report_refuses_to_pool_runs_of_the_same_images_unless_asked(case, tmp_path, capsys):
    make, how, key = POOLED[case]
    sweep = tmp_path / "sweep"
    runs = [make(sweep / f"{i}-saliency", i) for i in range(3)]
    _finished(sweep / "3-saliency", **{"dataset.seed": 1})  # other images: pooled with none of them

    assert main(["report", str(sweep)]) == 2
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [
        f"error: runs {', '.join(map(str, runs))} scored the same images and share a row; pooling them would count "
        f"each image 3 times; {how}, or pass --pool to pool them anyway"]
    assert not (sweep / "report.csv").exists()

    assert main(["report", str(sweep), "--pool"]) == 0
    pooled = pd.read_csv(sweep / "report.csv")
    assert pooled[["n", "n_runs"]].values.tolist() == [[16, 4]]
    if key is not None:
        assert main(["report", str(sweep), "--by", key, "--out", str(tmp_path / "by")]) == 0
        assert set(pd.read_csv(tmp_path / "by" / "report.csv")["n_runs"]) <= {1, 2}



def _shard(path: Path, shard: int, num_shards: int = 3, **changes) -> Path:
    return _finished(path, **{"dataset.shard": shard, "dataset.num_shards": num_shards, **changes})


def test_report_merges_the_shards_of_one_config_into_one_run(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for k in range(3):  # the shards of one run may run on different devices
        _shard(sweep / f"{k}-saliency", k, device=f"cuda:{k}")
    assert main(["report", str(sweep)]) == 0
    assert capsys.readouterr().err.strip() == ""
    assert pd.read_csv(sweep / "report.csv")[["n", "n_runs"]].values.tolist() == [[12, 1]]


def test_report_refuses_to_merge_shards_of_different_configs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    runs = [_shard(sweep / f"{k}-saliency", k, **{"method.beta": 1 if k < 2 else 2}) for k in range(3)]
    assert main(["report", str(sweep)]) == 2
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [
        f"error: shards {runs[0]}, {runs[1]}, {runs[2]} (dataset.num_shards=3) share a row but come from different "
        "configs: they differ in method.beta; merge only shards of one config (rerun the odd shards), or pass --by "
        "method.beta to keep them apart"]
    assert not (sweep / "report.csv").exists()
    assert main(["report", str(sweep), "--by", "method.beta"]) == 0  # two rows, each lacking shards
    assert sum("incomplete shards" in x for x in capsys.readouterr().err.splitlines()) == 2


def test_report_names_missing_shards_and_strict_refuses(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    runs = [_shard(sweep / f"{k}-saliency", k) for k in (0, 2)]
    line = (f"incomplete shards: {runs[0]}, {runs[1]} hold dataset.shard=0,2 of dataset.num_shards=3; missing "
            "dataset.shard=1 (run it with the same overrides, or resume its folder); reporting 2 of 3 shards")
    assert main(["report", str(sweep)]) == 0
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [line]
    assert pd.read_csv(sweep / "report.csv")[["n", "n_runs"]].values.tolist() == [[8, 1]]
    assert main(["report", str(sweep), "--strict", "--out", str(tmp_path / "strict")]) == 2
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [
        line, "error: --strict: 1 sharded run lacks shards (named above); run the missing shards, or leave out --strict"]


def test_report_refuses_a_shard_twice(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    runs = [_shard(sweep / "0-saliency", 0), _shard(sweep / "1-saliency", 0, device="cuda:1"),
            _shard(sweep / "2-saliency", 1)]
    assert main(["report", str(sweep)]) == 2
    assert [x for x in capsys.readouterr().err.splitlines() if x.strip()] == [
        f"error: runs {runs[0]}, {runs[1]} are the same shard (dataset.shard=0 of dataset.num_shards=3) of one "
        "config: merging them would count its images twice; report one of them"]
