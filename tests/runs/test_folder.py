"""The run-folder module: one definition of complete (DONE), finding runs (complete and incomplete), the folder
lifecycle, the manifest's config, chunks and the one markdown-table writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from xattr.errors import XattrError
from xattr.runs import Results, RunFolder, chunk_arrays, find_runs, is_complete, markdown_table, scan_runs
from xattr.runs.folder import fingerprint
from xattr.runs.writers import per_sample_frame


def _complete_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "summary.csv").write_text("method,model,dataset,metric,mean,std,n\nm,tiny,shapes,x,1.0,0.0,2\n")
    (path / "DONE").write_text("complete\n")
    return path


def _cfg(**changes):
    cfg = OmegaConf.create({"dataset": {"_target_": "D", "n_samples": 4}, "batch_size": 2, "target": "label",
                            "seed": 0, "method": {"_target_": "M"}, "metric": {"x": {"_target_": "X"}},
                            "model": {"name": "tiny", "device": "cpu"}})
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_complete_means_done_not_summary(tmp_path):
    only_summary = tmp_path / "sweep" / "0-a"
    only_summary.mkdir(parents=True)
    (only_summary / "summary.csv").write_text("method\n")  # e.g. killed between summary.csv and DONE
    done = _complete_run(tmp_path / "sweep" / "1-a")
    assert not is_complete(only_summary) and is_complete(done)
    assert find_runs([tmp_path / "sweep"]) == [done]
    with pytest.raises(XattrError, match="DONE"):
        find_runs([only_summary])


def test_find_runs_under_a_sweep(tmp_path):
    sweep = tmp_path / "multirun"
    runs = [_complete_run(sweep / f"{i}-saliency") for i in (0, 1, 2, 10)]
    (sweep / "3-saliency" / "partial").mkdir(parents=True)  # interrupted: skipped
    nested = _complete_run(sweep / "nested" / "0-x")
    assert find_runs([sweep]) == [*runs, nested]  # numbered subfolders in numeric order
    assert find_runs([runs[1], sweep]) == [runs[1], runs[0], *runs[2:], nested]  # path order, each once
    with pytest.raises(XattrError, match="does not exist"):
        find_runs([tmp_path / "nothing"])
    with pytest.raises(XattrError, match="no complete runs"):
        find_runs([sweep / "3-saliency"])


PROCESS_FIELDS = ("pid", "host", "heartbeat", "boot_id", "pid_namespace")


def _without_process(status: dict) -> dict:
    """``status.json`` less what every write adds about the writing process (tests/runs/test_provenance.py)."""
    return {key: value for key, value in status.items() if key not in PROCESS_FIELDS}


def test_folder_lifecycle(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert folder.open(resume=False) and folder.path.is_dir()
    assert folder.start(_cfg(), [0, 1, 2, 3], {"method": "m"}, n_batches=2) == set()
    manifest = json.loads(folder.manifest_path.read_text())
    assert manifest["selection"] == [0, 1, 2, 3] and "device" not in manifest["model"]
    folder.save_chunk(0, {"ids": np.array(["a", "b"]), "x": np.arange(2.0)})
    with pytest.raises(XattrError, match="already holds results"):
        RunFolder(folder.path).open(resume=False)
    assert RunFolder(folder.path).open(resume=True)
    with pytest.raises(XattrError, match="cannot resume .*: batch_size, seed differ"):
        folder.start(_cfg(batch_size=3, seed=1), [0, 1, 2, 3], {"method": "m"}, n_batches=2)
    assert folder.start(_cfg(**{"model.device": "cuda"}), [0, 1, 2, 3], {"method": "m"}, n_batches=2) == {0}
    assert folder.start(_cfg(), [0, 1, 2, 3], {"method": "m"}, n_batches=0) == set()

    with pytest.raises(RuntimeError), folder.recording({"method": "m"}):
        assert json.loads((folder.path / "status.json").read_text())["state"] == "running"
        raise RuntimeError("boom\nsecond line")
    status = _without_process(json.loads((folder.path / "status.json").read_text()))
    assert status == {"state": "failed", "error": "RuntimeError: boom", "names": {"method": "m"}}

    (chunk,) = folder.load_chunks(1)
    assert chunk["ids"].tolist() == ["a", "b"] and chunk["x"].tolist() == [0.0, 1.0]
    with pytest.raises(RuntimeError), folder.recording({"method": "m"}):
        folder.complete(done=2, total=2)
        raise RuntimeError("after DONE")  # a failure once the folder is complete leaves its status alone
    assert folder.is_complete() and not folder.partial.exists()
    status = _without_process(json.loads((folder.path / "status.json").read_text()))
    assert status == {"state": "complete", "done": 2, "total": 2}
    assert not folder.open(resume=True)  # complete: nothing to do
    with pytest.raises(XattrError, match="already holds results"):
        folder.open(resume=False)


def test_reading_a_run(tmp_path):
    folder = RunFolder(_complete_run(tmp_path / "r"))
    assert folder.config() is None and folder.per_sample() is None
    assert folder.summary(nrows=1)["method"].tolist() == ["m"]
    (folder.path / ".hydra").mkdir()
    (folder.path / ".hydra" / "config.yaml").write_text("seed: 3\n")
    assert folder.config().seed == 3


def test_chunks_merge_into_per_sample_rows_in_sample_then_name_order():
    chunks = [chunk_arrays(["a", "b"], {"labels": np.array([1, 2])}, np.zeros((2, 1, 2, 2), np.float32),
                           {"m1": np.array([0.1, 0.2]), "m2": np.array([1.0, 2.0])}, {"m1.curve": np.ones((2, 3))}),
              chunk_arrays(["c"], {"labels": np.array([3])}, np.ones((1, 1, 2, 2), np.float32),
                           {"m1": np.array([0.3]), "m2": np.array([3.0])}, {"m1.curve": np.zeros((1, 3))})]
    results = Results.from_chunks(chunks)
    assert results.ids.tolist() == ["a", "b", "c"] and list(results.samples) == ["labels"]
    assert list(results.values) == ["m1", "m2"] and results.curves["m1.curve"].shape == (3, 3)
    assert results.maps().shape == (3, 1, 2, 2)
    frame = per_sample_frame(results, {"label": "labels"})
    assert list(frame.columns) == ["id", "label", "metric", "value"]
    assert frame[["id", "metric"]].values.tolist() == [["a", "m1"], ["a", "m2"], ["b", "m1"], ["b", "m2"],
                                                       ["c", "m1"], ["c", "m2"]]
    assert frame["label"].tolist() == [1, 1, 2, 2, 3, 3]
    empty = per_sample_frame(Results.from_chunks([chunk_arrays(["a"], {}, np.zeros((1, 1, 1, 1)), {}, {})]), {})
    assert list(empty.columns) == ["id", "metric", "value"] and empty.empty


def test_one_markdown_table_writer():
    import xattr.tasks.report as report

    frame = pd.DataFrame({"metric": ["a", "b"], "mean": [0.5, 1 / 3], "n": [2, 3]})
    assert markdown_table(frame) == ("| metric | mean | n |\n| --- | --- | --- |\n"
                                     "| a | 0.5 | 2 |\n| b | 0.3333333333333333 | 3 |\n")
    assert markdown_table(frame, precision=4).splitlines()[-1] == "| b | 0.3333 | 3 |"
    assert report.markdown_table is markdown_table and not hasattr(report, "to_markdown")


def test_run_and_report_share_done_as_complete(tmp_path, checkpoint, monkeypatch):
    """A run that dies after summary.csv but before DONE is not complete for the run (resume finishes it) nor
    for the report (it is not listed)."""
    from run_helpers import make_cfg

    from xattr.tasks import run as run_task

    assert run_task.is_complete is is_complete

    def crash(*args, **kwargs):
        raise RuntimeError("killed while drawing")

    run_dir = tmp_path / "sweep" / "0-saliency"
    with monkeypatch.context() as patch:
        patch.setattr(run_task, "write_overview", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run_task.run(make_cfg(tmp_path, checkpoint, "dataset.n_samples=4"), out_dir=run_dir)
    assert (run_dir / "summary.csv").is_file() and not is_complete(run_dir)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    with pytest.raises(XattrError, match="no complete runs"):
        find_runs([tmp_path / "sweep"])
    with pytest.raises(XattrError, match="resume=true"):
        run_task.run(make_cfg(tmp_path, checkpoint, "dataset.n_samples=4"), out_dir=run_dir)
    run_task.run(make_cfg(tmp_path, checkpoint, "dataset.n_samples=4", "resume=true"), out_dir=run_dir)
    assert is_complete(run_dir) and find_runs([tmp_path / "sweep"]) == [run_dir]
    summary = (run_dir / "summary.md").read_text()
    assert summary.endswith(markdown_table(pd.read_csv(run_dir / "summary.csv"), precision=4))


def test_sigterm_is_recorded_as_failed(tmp_path):
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers live in the main thread")
    before = signal.getsignal(signal.SIGTERM)
    folder = RunFolder(tmp_path / "run")
    folder.open(resume=False)
    with pytest.raises(SystemExit) as stopped, folder.recording({"method": "m"}):
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.code == 143 and signal.getsignal(signal.SIGTERM) is before
    assert json.loads((folder.path / "status.json").read_text())["error"] == "SystemExit: 143"


def test_manifest_keeps_the_config_once_and_older_folders_still_resume(tmp_path):
    """manifest.json (top of the folder, kept after completion) holds the fingerprint and the composed config,
    written by the first run only; .hydra/config.yaml is not read while it exists. A folder interrupted before
    manifest.json (fingerprint in partial/manifest.json) resumes against that and then gets one."""
    folder = RunFolder(tmp_path / "run")
    assert folder.open(resume=False)
    folder.start(_cfg(), [0, 1, 2, 3], {"method": "m"}, n_batches=2)
    written = folder.manifest_path.read_bytes()
    assert folder.manifest_path == folder.path / "manifest.json"
    (folder.path / ".hydra").mkdir()
    (folder.path / ".hydra" / "config.yaml").write_text("seed: 5\n")  # Hydra's log of a later invocation
    assert folder.config().seed == 0 and folder.config().model.device == "cpu"
    again = RunFolder(folder.path)
    assert again.open(resume=True)
    again.start(_cfg(**{"model.device": "cuda"}), [0, 1, 2, 3], {"method": "m"}, n_batches=2)
    folder.complete(done=4, total=4)
    assert folder.manifest_path.read_bytes() == written and folder.config().model.device == "cpu"

    legacy = RunFolder(tmp_path / "legacy")
    (legacy.partial).mkdir(parents=True)
    (legacy.partial / "manifest.json").write_text(json.dumps(fingerprint(_cfg(), [0, 1, 2, 3], {"method": "m"})))
    legacy.save_chunk(0, {"ids": np.array(["a", "b"])})
    with pytest.raises(XattrError, match="already holds results"):
        legacy.open(resume=False)
    assert legacy.open(resume=True)
    with pytest.raises(XattrError, match="cannot resume .*: seed differ"):
        legacy.start(_cfg(seed=1), [0, 1, 2, 3], {"method": "m"}, n_batches=2)
    assert not legacy.manifest_path.exists()
    assert legacy.start(_cfg(), [0, 1, 2, 3], {"method": "m"}, n_batches=2) == {0}
    assert legacy.config().seed == 0 and legacy.read_manifest()["selection"] == [0, 1, 2, 3]


def test_scan_runs_lists_the_incomplete_folders_too(tmp_path):
    sweep = tmp_path / "multirun"
    done = [_complete_run(sweep / f"{i}-a") for i in (0, 2)]
    incomplete = []
    for i, name in ((1, "status.json"), (3, "manifest.json"), (10, "partial")):
        path = sweep / f"{i}-a"
        path.mkdir(parents=True)
        (path / name).mkdir() if name == "partial" else (path / name).write_text("{}")
        incomplete.append(path)
    (sweep / "4-a" / ".hydra").mkdir(parents=True)  # Hydra's folder of a job refused before the run task wrote to it
    incomplete.insert(2, sweep / "4-a")
    (sweep / "5-a").mkdir()  # an empty folder is no run
    assert scan_runs([sweep]) == (done, incomplete)
    assert scan_runs([done[0], sweep]) == (done, incomplete)
    assert scan_runs([incomplete[0]]) == ([], [incomplete[0]])
