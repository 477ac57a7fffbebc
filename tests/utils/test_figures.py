"""The library draws its figures without pyplot: the user's matplotlib backend is never switched
(``matplotlib.use``) and ``matplotlib.pyplot`` is never imported, by a run (the overview figure) nor by the
loss curve, the randomisation report or the difficulty plot; each is a PNG saved atomically."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import xattr
from xattr.utils.figures import agg_figure
from xattr.utils.io import atomic_savefig

PNG = b"\x89PNG\r\n\x1a\n"

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys, traceback
    from pathlib import Path

    importers = []  # the file whose import statement loads matplotlib.pyplot (not importlib's frames)

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "matplotlib.pyplot":
                frames = [f for f in traceback.extract_stack() if "importlib" not in f.filename]
                importers.append(frames[-2].filename)
            return None

    sys.meta_path.insert(0, Watch())
    import matplotlib
    matplotlib.use("svg")  # the user's choice: must survive every figure xattr draws
    import numpy as np, pandas as pd, torch
    out, checkpoint = Path(sys.argv[1]), sys.argv[2]
    seen = {}

    def check(name):
        seen[name] = [matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules]

    from xattr.runs.writers import write_overview
    write_overview(out / "direct", torch.rand(2, 3, 8, 8), np.random.rand(2, 1, 8, 8), ["a", "b"], "overview")
    check("overview")
    from xattr.training._loop import save_loss_curve
    save_loss_curve(out / "loss.png", [1.0 / (i + 1) for i in range(30)], "loss")
    check("loss_curve")
    from xattr.metrics.randomization_sanity import write_randomization_report
    write_randomization_report({"cascading/fc": [0.9, 0.8], "cascading/conv": [0.4, 0.3]}, out / "sanity")
    check("randomization")
    from xattr.tasks.difficulty import difficulty_breakdown
    rows = [{"method": "saliency", "model": "tiny_cnn", "dataset": "shapes", "id": f"s{i}", "target": 1,
             "confidence": i / 8, "metric": metric, "value": v}
            for i in range(8) for metric, v in (("insertion", 0.6), ("deletion", 0.2))]
    difficulty_breakdown(pd.DataFrame(rows), out / "difficulty", n_bins=4)
    check("difficulty")
    from xattr.cli import main
    code = main(["run", "debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25",
                 "dataset.n_samples=4", "batch_size=4", "n_figure=2", f"model.checkpoint={checkpoint}",
                 f"paths.root_dir={out}", f"paths.cache_dir={out}/cache", f"hydra.run.dir={out}/run"])
    seen["run"] = [matplotlib.get_backend(), code]
    print(json.dumps({"seen": seen, "importers": importers}))
""")


def test_figures_keep_the_users_backend_and_never_import_pyplot(tmp_path, checkpoint):
    """Each figure drawn in a fresh process whose user chose the svg backend: still svg after it, and pyplot
    not imported. A run of a captum method does load pyplot, from captum's own import
    (``captum.attr._utils.visualization``), never from xattr: the importers are checked."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(checkpoint)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    figures = ("overview", "loss_curve", "randomization", "difficulty")
    assert result["seen"] == {**{name: ["svg", False] for name in figures}, "run": ["svg", 0]}
    package = str(Path(xattr.__file__).resolve().parent)
    assert not [path for path in result["importers"] if str(Path(path).resolve()).startswith(package)]
    for path in ("direct/figures/overview.png", "run/figures/overview.png", "loss.png", "sanity/randomization.png",
                 "difficulty/difficulty.png"):
        assert (tmp_path / path).read_bytes().startswith(PNG), path


def test_atomic_savefig_saves_a_bare_figure_and_an_agg_one(tmp_path):
    for name, figure in (("bare", Figure(figsize=(2, 2))), ("agg", agg_figure(figsize=(2, 2)))):
        ax = figure.subplots()
        ax.imshow(np.eye(4))
        ax.set_title(name)
        atomic_savefig(tmp_path / f"{name}.png", figure)
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agg.png", "bare.png"]  # no temp file left
