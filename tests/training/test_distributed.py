"""xattr.training.distributed: the DiffIB trainers on several processes (DDP, gloo on the CPU here) train the same
network as one process on the same global batch, because every batch position draws from its own generator
seeded by (seed, step, position); only rank 0 writes files; a batch the processes cannot share is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from xattr.data import ShapesDataset
from xattr.errors import XattrError
from xattr.models import build_model
from xattr.training import _loop, distributed
from xattr.training._loop import sample_generators, sample_seed
from xattr.training.alpha_unet import AlphaUNetTrainer
from xattr.training.denoiser import DenoiserTrainer
from xattr.utils.io import load_torch_file

ROOT = Path(__file__).resolve().parents[2]
#: tiny trainings: 6 steps of a global batch of 4 on 16 rendered 16x16 images, a partial state every 2 steps
TINY = {"steps": 6, "batch_size": 4, "width": 4, "depth": 2, "train_size": 16, "save_every": 2}
TRAINERS = {"denoiser": DenoiserTrainer, "alpha_unet": AlphaUNetTrainer}


def read(path):
    """A file the trainers wrote, read weights-only as the suite reads it."""
    return load_torch_file(path, name="checkpoint", fix="a test bug")

def classifier() -> torch.nn.Module:
    """The alpha-U-Net's classifier: a seeded random tiny_cnn for 16x16 images (the same in every process)."""
    torch.manual_seed(0)
    return build_model("tiny_cnn", num_classes=6, image_size=16)


def train(kind: str, checkpoint: Path | None) -> dict:
    """One tiny training of ``kind`` in this process (inside whatever process group is up): its EMA weights, the
    per-step losses it logged and the names of the files it wrote."""
    trainer = TRAINERS[kind].from_conf(**TINY)
    images = ShapesDataset(split="train", image_size=16)
    seen, finish = {}, _loop.ResumableSteps.finish

    def finishing(loop, meta):
        seen["losses"] = list(loop.losses)
        return finish(loop, meta)

    with mock.patch.object(_loop.ResumableSteps, "finish", finishing), \
            mock.patch.object(_loop, "write_partial", wraps=_loop.write_partial) as partial, \
            mock.patch.object(_loop, "write_final", wraps=_loop.write_final) as final:
        if kind == "denoiser":
            net = trainer.fit(images, seed=5, checkpoint=checkpoint, progress=False)
        else:
            net = trainer.fit(classifier(), images, seed=5, checkpoint=checkpoint, progress=False)
    written = [call.args[0].name for call in partial.call_args_list + final.call_args_list]
    return {**seen, "ema": net.state_dict(), "written": written}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_worker(rank: int, kind: str, world: int, port: int, folder: str) -> None:
    """Spawned ``world`` times with torchrun's environment: :func:`train` in the process group that
    :func:`distributed.session` joins; what this rank saw goes to ``<folder>/rank<r>.pt``."""
    torch.set_num_threads(1)
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    with distributed.session("cpu") as device:
        assert device == torch.device("cpu") and distributed.world_size() == world and distributed.rank() == rank
        seen = train(kind, Path(folder) / "ddp.pt")
    assert not distributed.active()
    torch.save(seen, Path(folder) / f"rank{rank}.pt")


def run_ranks(kind: str, folder: Path, world: int = 2) -> list[dict]:
    """:func:`train` on ``world`` spawned processes (gloo); what each rank saw."""
    torch.multiprocessing.spawn(_rank_worker, args=(kind, world, free_port(), str(folder)), nprocs=world)
    return [read(folder / f"rank{rank}.pt") for rank in range(world)]


def assert_same_weights(weights: dict, reference: dict, what: str) -> None:
    assert weights.keys() == reference.keys()
    for name, weight in reference.items():
        torch.testing.assert_close(weights[name], weight, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{what} {name}: {m}")


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_two_processes_train_what_one_process_trains_on_the_same_global_batch(kind, tmp_path):
    single = train(kind, tmp_path / "single.pt")
    ranks = run_ranks(kind, tmp_path)
    assert len(single["losses"]) == TINY["steps"]
    for rank, seen in enumerate(ranks):
        # the logged loss is the all-reduced mean over the ranks: every rank logs the one-process curve
        torch.testing.assert_close(torch.tensor(seen["losses"]), torch.tensor(single["losses"]), rtol=1e-5, atol=0)
        assert_same_weights(seen["ema"], single["ema"], f"rank {rank}")
    # rank 0 alone writes the partial states (steps 2, 4, 6) and the final checkpoint
    assert ranks[0]["written"] == ["ddp.partial.pt"] * 3 + ["ddp.pt"] and ranks[1]["written"] == []
    assert_same_weights(read(tmp_path / "ddp.pt")["model"], single["ema"], "checkpoint")
    assert (tmp_path / "ddp.loss.png").is_file() and not (tmp_path / "ddp.partial.pt").exists()


# ------------------------------------------------------------------------------------ per-sample streams


def test_sample_seeds_depend_on_seed_step_and_position_only_and_do_not_collide():
    seeds = {sample_seed(seed, step, position) for seed in (0, 1) for step in range(200) for position in range(64)}
    assert len(seeds) == 2 * 200 * 64 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(0, 1, 0) != sample_seed(0, 0, 1)  # no seed * P + step * B + position arithmetic to collide


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_a_batch_is_the_concatenation_of_its_parts_and_a_position_draws_the_same_in_any_batch(kind):
    trainer = TRAINERS[kind].from_conf(smooth_fraction=0.5) if kind == "denoiser" else TRAINERS[kind].from_conf()

    def draws(positions, step=3):
        return trainer.draws(sample_generators(7, step, positions), 16, (3, 16, 16))

    whole = draws(range(8))
    halves = [torch.cat(parts) for parts in zip(draws(range(4)), draws(range(4, 8)))]
    bigger = [part[:8] for part in draws(range(12))]
    for a, b, c in zip(whole, halves, bigger):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(draws(range(8))[-1], draws(range(8), step=4)[-1]), "two steps drew the same noise"
    assert len(set(whole[0].tolist())) > 1, "every position drew the same image"


def test_sample_log_snr_keeps_its_law_when_drawn_per_image():
    """Per image: its own shift g (std alpha_sample_scale), white or smooth n (std alpha_scale), smooth ones in
    about smooth_fraction of the images (a smooth field has highly correlated neighbours)."""
    trainer = DenoiserTrainer.from_conf()
    _, _, alpha, _ = trainer.draws(sample_generators(0, 0, range(400)), 16, (1, 16, 16))
    n = alpha - alpha.mean((1, 2, 3), keepdim=True)
    shift_std = alpha.mean((1, 2, 3)).std().item()
    assert abs(shift_std - trainer.alpha_sample_scale) < 0.5, shift_std
    neighbours = (n[..., 1:] * n[..., :-1]).mean((1, 2, 3)) / n.pow(2).mean((1, 2, 3))
    smooth = (neighbours > 0.5).float().mean().item()
    assert abs(smooth - trainer.smooth_fraction) < 0.1, smooth


def test_rank_r_computes_its_share_of_the_global_batch(monkeypatch):
    assert distributed.local_positions(6) == range(6) and not distributed.active()
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.local_positions(8) == range(4, 8)


def test_a_global_batch_the_processes_cannot_share_is_one_line(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    trainer = DenoiserTrainer.from_conf(**{**TINY, "batch_size": 5})
    with pytest.raises(XattrError, match=r"batch_size=5 is not divisible by the 2 training processes") as error:
        trainer.fit(ShapesDataset(split="train", image_size=16, length=4), progress=False)
    assert "\n" not in str(error.value) and "task.batch_size=4" in str(error.value)


def test_without_a_process_group_the_helpers_answer_for_one_process():
    t = torch.tensor([1.0, 3.0])
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.all_mean(t) is t
    distributed.barrier()
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, torch.device("cpu")) is net


def test_a_bare_cuda_under_torchrun_is_the_local_rank_s_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "check_device", torch.device)  # no GPU needed to resolve the name
    assert distributed.local_device("cuda") == torch.device("cuda", 1)
    assert distributed.local_device("cuda:0") == torch.device("cuda", 0)
    assert distributed.local_device("cpu") == torch.device("cpu")


# ------------------------------------------------------------------------------------ resume, device, precision


def test_a_partial_state_of_the_old_single_generator_says_delete_it(tmp_path):
    trainer = DenoiserTrainer.from_conf(**TINY)
    images = ShapesDataset(split="train", image_size=16)
    net = trainer.fit(images, seed=5, progress=False)
    partial = tmp_path / "old.partial.pt"
    optimizer = torch.optim.Adam(net.parameters())
    torch.save({"model": net.state_dict(), "ema": net.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": torch.Generator().get_state(), "step": 2, "losses": [1.0, 0.9]}, partial)
    with pytest.raises(XattrError, match="delete it") as error:
        trainer.fit(images, seed=5, checkpoint=tmp_path / "old.pt", progress=False)
    assert str(partial) in str(error.value) and "\n" not in str(error.value)


def test_an_interrupted_alpha_unet_training_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    """The draws of a step depend on (seed, step, position) only: nothing of the stream is kept to resume."""
    reference = train("alpha_unet", tmp_path / "ref.pt")
    update, calls = _loop.EMA.update, []

    def flaky(ema, module):
        calls.append(1)
        if len(calls) == 4:  # after the partial state of step 2, before the one of step 4
            raise KeyboardInterrupt
        update(ema, module)

    monkeypatch.setattr(_loop.EMA, "update", flaky)
    with pytest.raises(KeyboardInterrupt):
        train("alpha_unet", tmp_path / "run.pt")
    assert read(tmp_path / "run.partial.pt")["step"] == 2
    monkeypatch.setattr(_loop.EMA, "update", update)
    resumed = train("alpha_unet", tmp_path / "run.pt")
    assert resumed["written"] == ["run.partial.pt"] * 2 + ["run.pt"] and resumed["losses"] == reference["losses"]
    assert_same_weights(resumed["ema"], reference["ema"], "resumed")


def test_bf16_autocast_trains_float32_weights_on_the_cpu():
    trainer = DenoiserTrainer.from_conf(**{**TINY, "steps": 2})
    net = trainer.fit(ShapesDataset(split="train", image_size=16), seed=5, progress=False, precision="bf16")
    assert all(p.dtype == torch.float32 and p.isfinite().all() for p in net.parameters())
    with pytest.raises(XattrError, match="precision='fp8'"):
        trainer.fit(ShapesDataset(split="train", image_size=16), progress=False, precision="fp8")


def test_the_alpha_unet_trains_on_its_classifier_s_device():
    with pytest.raises(XattrError, match="device=meta but the classifier is on cpu"):
        AlphaUNetTrainer.from_conf(**TINY).fit(classifier(), ShapesDataset(split="train", image_size=16),
                                              device="meta", progress=False)


# ------------------------------------------------------------------------------------ torchrun


def xattr_train(tmp_path: Path, folder: str, launcher: list[str]) -> dict:
    """``xattr train task=denoiser`` on tiny overrides under ``launcher``; the checkpoint it wrote."""
    root = tmp_path / folder
    args = ["train", "task=denoiser", "task.steps=4", "task.width=4", "task.depth=2", "task.train_size=16",
            "dataset.image_size=16", f"paths.root_dir={root}", f"hydra.run.dir={root}/run"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *launcher, "-m", "xattr.cli", *args], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("denoiser for shapes: checkpoint") == 1, done.stdout  # only rank 0 prints it
    written = list((root / ".cache" / "denoisers").glob("*.pt"))
    assert [path.name for path in written] == ["shapes-16-w4d2-imagenet.pt"], written
    return read(written[0])


def test_torchrun_with_two_processes_writes_the_checkpoint_of_one_process(tmp_path):
    one = xattr_train(tmp_path, "one", [])
    two = xattr_train(tmp_path, "two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"])
    assert two["config"] == one["config"] and two["meta"]["steps"] == 4
    assert two["meta"]["final_loss"] == pytest.approx(one["meta"]["final_loss"], rel=1e-5)
    assert_same_weights(two["model"], one["model"], "torchrun checkpoint")
