"""Whose a run folder is, through the real command (``xattr.cli.main`` in-process): the composed config of the
folder's results is the manifest's, written once; an invocation that does not compute the folder's results
(refused, nothing to do, locked out, a resume with other overrides) changes none of the files xattr wrote,
and `xattr report` still labels the results by the config they were computed with; a resume compares the
fingerprint before any model or method is built; Ctrl-C is one line, exit 130, state ``interrupted``, and
the run resumes to the same results."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd
import pytest
from run_helpers import Interrupt

from xattr.cli import main
from xattr.runs import RunFolder
from xattr.tasks import run as run_task
from xattr.utils.locks import exclusive

# one fast metric and 8 images in two batches of 4
FAST = ["debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25", "dataset.n_samples=8"]
#: written by Hydra (its log of the last invocation) or the lock, not by the run: left out of the snapshots
HYDRA_OWN = (".hydra", "xattr.log", ".lock", "multirun.yaml")


def common(tmp_path: Path, checkpoint: Path) -> list[str]:
    return [*FAST, f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` that xattr wrote, with its bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and not any(part in HYDRA_OWN for part in path.relative_to(root).parts)}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def report_rows(capsys, *args: str) -> pd.DataFrame:
    out = args[0] + "-report"
    assert main(["report", *args, "--out", out]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return pd.read_csv(Path(out) / "report.csv")


def _in_second_batch(monkeypatch, error: type[BaseException]):
    from xattr.methods.saliency import Saliency

    calls, original = [], Saliency._attribute

    def attribute(self, x, target):
        calls.append(x.shape[0])
        if len(calls) == 2:
            raise error
        return original(self, x, target)

    monkeypatch.setattr(Saliency, "_attribute", attribute)


def _crash_in_second_batch(monkeypatch):
    _in_second_batch(monkeypatch, Interrupt)



# --------------------------------------------------------------------------- 1: a refused or do-nothing run

# name: (a sweep?, the second invocation's overrides, hold the lock meanwhile?, exit code, its error line(s))
SECOND_INVOCATIONS = {
    "resume_of_a_complete_run": (False, ["method=integrated_gradients", "seed=5", "resume=true"], False, 0, None),
    "refused_without_resume": (False, ["method=integrated_gradients", "seed=5"], False, 2, "already holds results"),
    "while_another_process_holds_it": (False, ["method=integrated_gradients", "seed=5", "resume=true"], True, 2,
                                       "is in use by another process"),
    # a sweep's job folders are named after the method (conf/hydra/default.yaml): the re-run changes the seed
    "sweep_rerun": (True, ["seed=5"], False, 2, "already holds results"),
    "sweep_rerun_with_resume": (True, ["seed=5", "resume=true"], False, 0, None),
}


@pytest.mark.parametrize("case", list(SECOND_INVOCATIONS))
def test_an_invocation_that_computes_nothing_leaves_the_folder_as_it_was(case, tmp_path, checkpoint, capsys):
    sweep, overrides, locked, code, message = SECOND_INVOCATIONS[case]
    root = tmp_path / "out"
    where = ["-m", f"hydra.sweep.dir={root}", "dataset.seed=0,1"] if sweep else [f"hydra.run.dir={root}"]
    assert main(["run", *where, *common(tmp_path, checkpoint)]) == 0
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if sweep else [root]
    before = snapshot(root)
    capsys.readouterr()

    with exclusive(root, "run folder") if locked else contextlib.nullcontext():
        assert main(["run", *where, *common(tmp_path, checkpoint), *overrides]) == code
    lines = error_lines(capsys.readouterr().err)
    if message is not None:
        assert len(lines) == len(folders) and all(line.startswith("error: ") and message in line for line in lines)
    assert snapshot(root) == before  # manifest, status, results: as the first run left them
    if sweep:  # Hydra did rewrite its log of the invocation (names.* back to null): never read for results
        assert "method: null" in (folders[0] / ".hydra" / "config.yaml").read_text()

    rows = report_rows(capsys, str(root), "--by", "seed", "--by", "names.method", "--by", "method._target_",
                       "--by", "dataset.seed")
    assert set(rows["seed"]) == {0} and set(rows["names.method"]) == {"saliency"}
    assert set(rows["method._target_"]) == {"xattr.methods.saliency.Saliency"} and set(rows["n"]) == {8}
    for folder in folders:  # read from the manifest, which the first run wrote
        assert RunFolder(folder).config().method._target_ == "xattr.methods.saliency.Saliency"
        assert json.loads((folder / "manifest.json").read_text())["config"]["names"]["method"] == "saliency"


# --------------------------------------------------------------------------- 5: resume compares first

# a resume of an interrupted run (seed=3, batch_size=2) with other overrides: (overrides, what differs)
RESUME_MISMATCH = {
    "without_its_overrides": ([], "batch_size, seed differ"),
    "with_the_default_method": (["seed=3", "batch_size=2", "method=diffib"], "names, method differ"),
    "with_another_method": (["seed=3", "batch_size=2", "method=integrated_gradients"], "names, method differ"),
    "on_other_images": (["seed=3", "batch_size=2", "dataset.seed=1"], "dataset, selection differ"),
    "with_another_metric_setting": (["seed=3", "batch_size=2", "metric.deletion.step=0.5"], "metric differ"),
    "with_another_model": (["seed=3", "batch_size=2", "model.width=8"], "model differ"),
}


@pytest.mark.parametrize("case", list(RESUME_MISMATCH))
def test_resume_with_other_overrides_is_refused_before_any_setup_and_writes_nothing(
        case, tmp_path, checkpoint, capsys, monkeypatch):
    overrides, differ = RESUME_MISMATCH[case]
    run_dir = tmp_path / "run"
    args = ["run", *common(tmp_path, checkpoint), f"hydra.run.dir={run_dir}"]
    with monkeypatch.context() as patch:
        _crash_in_second_batch(patch)
        with pytest.raises(Interrupt):
            main([*args, "seed=3", "batch_size=2"])
    before = snapshot(run_dir)
    capsys.readouterr()

    def expensive(*args, **kwargs):
        raise AssertionError("model or method built before the fingerprint was compared")

    monkeypatch.setattr(run_task, "build_model", expensive)
    monkeypatch.setattr(run_task, "build_method", expensive)
    assert main([*args, "resume=true", *overrides]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line == (f"error: cannot resume {run_dir}: {differ} from the interrupted run; repeat its overrides "
                    "or start a new hydra.run.dir")
    assert snapshot(run_dir) == before  # status.json still says failed at 2 of 8; manifest unchanged
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"


# --------------------------------------------------------------------------- 8b: Ctrl-C

def _ctrl_c_in_second_batch(monkeypatch):
    _in_second_batch(monkeypatch, KeyboardInterrupt)  # what Python's SIGINT handler raises


def _ctrl_c_once(monkeypatch, name: str):
    original, calls = getattr(run_task, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(run_task, name, interrupted)


# where Ctrl-C hits: (patch, samples the folder keeps)
CTRL_C = {
    "while_building_the_model": (lambda patch: _ctrl_c_once(patch, "build_model"), 0),
    "in_the_second_batch": (_ctrl_c_in_second_batch, 4),
    "while_writing_the_results": (lambda patch: _ctrl_c_once(patch, "write_summary"), 8),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, checkpoint) -> pd.DataFrame:
    """per_sample.csv of an uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(["run", *common(tmp, checkpoint), f"hydra.run.dir={tmp / 'run'}"]) == 0
    return pd.read_csv(tmp / "run" / "per_sample.csv")


@pytest.mark.parametrize("case", list(CTRL_C))
def test_ctrl_c_is_one_line_exit_130_and_resumes(case, tmp_path, checkpoint, capsys, monkeypatch, reference):
    interrupt, kept = CTRL_C[case]
    run_dir = tmp_path / "run"
    args = ["run", *common(tmp_path, checkpoint), f"hydra.run.dir={run_dir}"]
    with monkeypatch.context() as patch:
        interrupt(patch)
        try:
            code = main(args)
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped the command with a traceback")
    assert code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and error_lines(err) == [
        f"interrupted: run folder {run_dir} keeps {kept} of 8 samples; continue it with "
        f"`xattr run resume=true hydra.run.dir={run_dir}` and the same overrides"]
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["done"], status["total"]) == ("interrupted", kept, 8)
    assert not (run_dir / "DONE").exists() and len(list(run_dir.glob("partial/batch-*.npz"))) == kept // 4

    assert main([*args, "resume=true"]) == 0
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "per_sample.csv"), reference)
