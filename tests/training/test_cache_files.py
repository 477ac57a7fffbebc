"""Cache files the suite writes itself (classifiers, denoisers, alpha-U-Nets, their resumable ``.partial.pt``
states, feature statistics): read weights-only, never run code; a bad entry is one line that names the file and
says to delete it; two processes on an empty cache build an entry once (the other waits, then loads it)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import traceback
from pathlib import Path

import pytest
import torch
from cache_helpers import FAULTS, plant

from xattr.data import ShapesDataset
from xattr.errors import XattrError
from xattr.info.feature_statistics import feature_statistics
from xattr.models import build_model
from xattr.training.alpha_unet import AlphaUNetTrainer, load_or_train_alpha_unet
from xattr.training.classifier import checkpoint_path, load_trained_classifier, train_classifier
from xattr.training.denoiser import DenoiserTrainer, load_or_train_denoiser

TINY_NET = {"width": 4, "depth": 2}  # U-Nets of the denoiser and the alpha-U-Net (names: ...-w4d2-imagenet.pt)
TINY_STEPS = {"steps": 2, "batch_size": 2, "train_size": 4, "save_every": 1}


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tiny_cnn", num_classes=6)


def train_set(n: int = 4) -> ShapesDataset:
    return ShapesDataset(split="train", length=n)


# each cache kind: (where its file lies under the cache folder, the public call that reads it)
def _classifier(cache: Path):
    return load_trained_classifier("tiny_cnn", "shapes", 64, cache_dir=cache)


def _classifier_partial(cache: Path):
    return train_classifier(tiny_cnn(), train_set(8), ShapesDataset("test", length=4), epochs=1, batch_size=4,
                            lr=1e-3, weight_decay=0.0, checkpoint=checkpoint_path(cache, "tiny_cnn", "shapes", 64))


def _denoiser(cache: Path, dataset=None):
    return load_or_train_denoiser(dataset, cache, "shapes", 64, **TINY_NET, **TINY_STEPS)


def _alpha_unet(cache: Path, dataset=None):
    return load_or_train_alpha_unet(tiny_cnn(), dataset, cache, "tiny_cnn", "shapes", 64, **TINY_NET, **TINY_STEPS)


def _feature_stats(cache: Path):
    return feature_statistics(tiny_cnn(), "bottleneck", train_set(4), n_samples=4, batch_size=4, cache_dir=cache,
                              cache_key="k", progress=False)


DENOISER = DenoiserTrainer.from_conf(**TINY_NET).filled().checkpoint(Path(), "shapes", 64)
ALPHA_UNET = AlphaUNetTrainer.from_conf(**TINY_NET).filled().checkpoint(Path(), "tiny_cnn", "shapes", 64)
CLASSIFIER = checkpoint_path(Path(), "tiny_cnn", "shapes", 64)
KINDS = {
    "classifier": (CLASSIFIER, _classifier),
    "classifier-partial": (CLASSIFIER.with_suffix(".partial.pt"), _classifier_partial),
    "denoiser": (DENOISER, _denoiser),
    "denoiser-partial": (DENOISER.with_suffix(".partial.pt"), lambda cache: _denoiser(cache, train_set())),
    "alpha_unet": (ALPHA_UNET, _alpha_unet),
    "alpha_unet-partial": (ALPHA_UNET.with_suffix(".partial.pt"), lambda cache: _alpha_unet(cache, train_set())),
    "feature_stats": (Path("feature_stats") / "k.pt", _feature_stats),
}


def test_the_planted_payload_runs_code_when_unpickled_unsafely(tmp_path):
    """The plant of the tests below is live: an unsafe load (``weights_only=False``) runs it."""
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    plant(path, "code", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_bad_cache_file_runs_nothing_and_is_one_line_saying_delete_it(kind, fault, tmp_path):
    relative, use = KINDS[kind]
    cache, marker = tmp_path / "cache", tmp_path / "payload-ran"
    planted = cache / relative
    content = plant(planted, fault, marker)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    try:
        use(cache)
    except Exception as raised:  # noqa: BLE001 - checked below, after the marker
        error = raised
    else:
        pytest.fail("a bad cache file was taken as it is")
    assert not marker.exists(), "a cache file ran code"
    assert isinstance(error, XattrError), repr(error)
    message = str(error)
    assert "\n" not in message and str(planted) in message and "delete it" in message, message
    assert "model.checkpoint" not in message, message
    # the bad file is left as it was, nothing was trained or written beside it (but the entry's lock file)
    assert planted.read_bytes() == content
    after = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock")
    assert after == before


# the first uses that can rebuild each kind (with a training set), but the cached classifier (a full training)
REBUILD = {"classifier-partial": _classifier_partial, "denoiser": lambda cache: _denoiser(cache, train_set()),
           "alpha_unet": lambda cache: _alpha_unet(cache, train_set()), "feature_stats": _feature_stats}
REBUILD.update({"denoiser-partial": REBUILD["denoiser"], "alpha_unet-partial": REBUILD["alpha_unet"]})


@pytest.mark.parametrize("kind", list(REBUILD))
def test_deleting_the_named_file_is_the_fix(kind, tmp_path):
    """What the line says works: with the named file deleted, the next use builds the entry."""
    relative, use = KINDS[kind]
    cache = tmp_path / "cache"
    plant(cache / relative, "garbage", tmp_path / "payload-ran")
    with pytest.raises(XattrError, match="delete it"):
        use(cache)
    (cache / relative).unlink()
    REBUILD[kind](cache)
    assert (cache / str(relative).replace(".partial.pt", ".pt")).is_file()


def test_a_user_checkpoint_keeps_its_own_advice(tmp_path):
    """model.checkpoint=PATH is the user's file: unreadable or unfitting, the advice is about that option."""
    marker = tmp_path / "payload-ran"
    for fault in ("code", "garbage", "wrong-content"):
        path = tmp_path / f"{fault}.pt"
        plant(path, fault, marker)
        with pytest.raises(XattrError) as error:
            build_model("tiny_cnn", num_classes=6, checkpoint=str(path))
        message = str(error.value)
        assert "\n" not in message and str(path) in message and "delete" not in message, message
    assert not marker.exists()


def test_a_cached_classifier_that_does_not_fit_says_delete_it(tmp_path):
    """A readable state dict of another shape in the classifier cache: the cache entry is stale."""
    path = tmp_path / CLASSIFIER
    path.parent.mkdir(parents=True)
    torch.save({"model": build_model("tiny_cnn", num_classes=10).state_dict()}, path)
    with pytest.raises(XattrError, match=r"delete it") as error:
        _classifier(tmp_path)
    assert str(path) in str(error.value) and "model.checkpoint" not in str(error.value)


def test_every_cache_file_written_loads_weights_only(tmp_path):
    """What the trainers and the statistics write (final, partial) is plain tensors/dicts/lists/str/numbers."""
    cache = tmp_path / "cache"
    _classifier_partial(cache)
    _denoiser(cache, train_set())
    _alpha_unet(cache, train_set())
    _feature_stats(cache)
    written = sorted(cache.rglob("*.pt"))
    assert [p.relative_to(cache) for p in written] == sorted([CLASSIFIER, DENOISER, ALPHA_UNET,
                                                              Path("feature_stats") / "k.pt"])
    for path in written:
        torch.load(path, weights_only=True)


def test_a_state_that_would_not_load_weights_only_is_not_written(tmp_path):
    """The writer's side: a state with other objects than tensors and plain values is a bug, refused at once."""
    from cache_helpers import Payload

    from xattr.utils.io import atomic_torch_save

    path = tmp_path / "entry.pt"
    with pytest.raises(TypeError, match="weights_only=True"):
        atomic_torch_save(path, {"model": {}, "meta": Payload(tmp_path / "payload-ran")})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ concurrent first use


def weights_digest(entry) -> str:
    """Hash of the tensors of what a first use returned (a network's state dict, or the statistics' dict)."""
    tensors = entry.state_dict() if isinstance(entry, torch.nn.Module) else entry
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _first_use_in_a_process(kind: str, cache: str, barrier, results) -> None:
    """Spawned twice on one empty cache: the first use of ``kind``; reports (times trained, weights digest)."""
    try:
        torch.set_num_threads(1)
        messages = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: messages.append(record.getMessage())
        logging.getLogger("xattr").addHandler(handler)
        if kind == "classifier":  # a tiny training: few images, one epoch
            from xattr.data import shapes
            from xattr.training.classifier import ClassifierTrainer

            shapes.SPLIT_SIZES.update(train=16, test=8)
            ClassifierTrainer.hparams_for = lambda self, name: {"epochs": 1, "batch_size": 8, "lr": 1e-3,
                                                                "weight_decay": 0.0, "train_size": 16}
        if kind == "feature_stats":  # statistics log nothing: count the estimations
            from xattr.info import feature_statistics as fs

            estimate = fs._estimate
            fs._estimate = lambda *args: messages.append("training it now") or estimate(*args)
        barrier.wait()
        entry = {"classifier": _classifier, "denoiser": lambda c: _denoiser(c, train_set()),
                 "alpha_unet": lambda c: _alpha_unet(c, train_set()), "feature_stats": _feature_stats}[kind](Path(cache))
        results.put((sum("training it now" in message for message in messages), weights_digest(entry)))
    except BaseException:  # noqa: BLE001 - reported to the test, which fails on it
        results.put((None, traceback.format_exc()))


@pytest.mark.parametrize("kind", ["classifier", "denoiser",  # the same load_or_build: the other two are slow cases
                                  pytest.param("alpha_unet", marks=pytest.mark.slow),
                                  pytest.param("feature_stats", marks=pytest.mark.slow)])
def test_two_processes_on_an_empty_cache_build_an_entry_once(kind, tmp_path):
    """Both start at once (a barrier) on an empty cache: one builds the entry under its lock, the other waits and
    loads the finished file; both end with the same weights, no partial state is left."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_first_use_in_a_process, args=(kind, str(tmp_path), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    for built, digest in outcomes:
        assert built is not None, digest
    assert sorted(built for built, _ in outcomes) == [0, 1], "the entry was not built exactly once"
    assert outcomes[0][1] == outcomes[1][1], "the two processes ended with different weights"
    entry = tmp_path / KINDS[kind][0]
    assert entry.is_file() and list(entry.parent.glob("*.partial.pt")) == []


# `xattr train task=<task>`: tiny overrides, the cache entry it writes, the attribute of the module that trains
TRAIN_TASKS = {
    "classifier": (["model=tiny_cnn", "task.epochs=1", "task.train_size=8", "task.batch_size=4", "dataset.length=8"],
                   CLASSIFIER, "xattr.training.classifier", "train_classifier"),
    "denoiser": (["task.steps=1", "task.width=4", "task.depth=2", "task.train_size=4", "dataset.length=4"],
                 DENOISER, "xattr.training.denoiser", "DenoiserTrainer.fit"),
    "alpha_unet": (["model=tiny_cnn", "task.steps=1", "task.width=4", "task.depth=2", "task.train_size=4",
                    "dataset.length=4"], ALPHA_UNET, "xattr.training.alpha_unet", "AlphaUNetTrainer.fit"),
}


@pytest.mark.parametrize("task", list(TRAIN_TASKS))
def test_xattr_train_trains_under_the_entry_lock(task, tmp_path, monkeypatch):
    """`xattr train` writes the same cache entry as a first use: it trains holding the entry's lock (a first use
    elsewhere waits for it). The probe, another lock holder, finds the lock taken while the training runs."""
    import importlib
    import threading

    from filelock import Timeout

    from xattr.cli import main
    from xattr.utils.locks import waiting

    overrides, relative, module_name, attribute = TRAIN_TASKS[task]
    entry, held = tmp_path / "cache" / relative, []

    def probe():
        try:
            with waiting(entry, timeout=0):
                held.append(False)
        except Timeout:
            held.append(True)

    module = importlib.import_module(module_name)
    owner, _, name = attribute.rpartition(".")
    owner = getattr(module, owner) if owner else module
    train = getattr(owner, name)

    def probed(*args, **kwargs):
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return train(*args, **kwargs)

    monkeypatch.setattr(owner, name, probed)
    # alpha_unet's run: a random classifier instead of training one
    monkeypatch.setattr("xattr.training.classifier.load_trained_classifier", lambda *args, **kwargs: tiny_cnn())
    args = ["train", f"task={task}", *overrides, f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache",
            f"hydra.run.dir={tmp_path}/run"]
    assert main(args) == 0
    assert held == [True] and entry.is_file(), "xattr train trained without holding the entry's lock"


@pytest.mark.parametrize("fault", ["garbage", "code"])
def test_xattr_train_alpha_unet_stops_at_a_bad_cached_classifier(fault, tmp_path, capsys):
    """The alpha-U-Net is trained for the cached classifier: a bad entry is the one line, not a random classifier."""
    from xattr.cli import main

    planted, marker = tmp_path / "cache" / CLASSIFIER, tmp_path / "payload-ran"
    content = plant(planted, fault, marker)
    args = ["train", "task=alpha_unet", "model=tiny_cnn", "task.steps=1", "task.width=4", "task.depth=2",
            "task.train_size=4", "dataset.length=4", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache",
            f"hydra.run.dir={tmp_path}/run"]
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: classifier cache file") and str(planted) in lines[0], lines
    assert "delete it" in lines[0] and not marker.exists() and planted.read_bytes() == content
    assert not (tmp_path / "cache" / ALPHA_UNET).exists()


def test_every_torch_load_in_the_package_and_scripts_is_weights_only():
    """No reader of a torch file can run pickled code: each ``torch.load(...)`` call in ``xattr/`` and ``scripts/``
    passes ``weights_only=True`` (the one reader is :func:`xattr.utils.io.load_torch_file`)."""
    import ast

    root = Path(__file__).resolve().parents[2]
    calls = []
    for path in [*(root / "xattr").rglob("*.py"), *(root / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                calls.append((f"{path.relative_to(root)}:{node.lineno}", safe))
    assert calls, "the scan found no torch.load call at all (the package's reader is one)"
    assert all(safe for _, safe in calls), [where for where, safe in calls if not safe]
