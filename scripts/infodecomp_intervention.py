"""Prompt intervention (Info-Decomp Fig. 3 / Table 4): `make infodecomp-intervention SCALE=tiny|paper`.

    python scripts/infodecomp_intervention.py --scale tiny --out outputs/infodecomp/tiny/intervention \
        [--steps 100] [--omit delete|underscore] [--batch 10] [--figure 4] [--bootstrap 100] [KEY=VALUE ...]

Composes ``conf/run.yaml`` with ``method=info_cmi`` and, at ``--scale tiny``, ``model=tiny_t2i
dataset=shapes_captions dataset.words=nouns dataset.n_samples=100`` (the cached trained tiny_t2i; trained first
if missing), at ``--scale paper`` ``model=sd21 dataset=coco100_it`` (offline: the one-line missing-data or
missing-weights error). Trailing ``KEY=VALUE`` are Hydra overrides of that config (``dataset.n_samples=20``,
``method.n_draws=50``, ``method.estimator=i_s``, ``device=cuda``). The protocol is
:mod:`xattr.tasks.intervention`; the files are listed in :func:`xattr.tasks.intervention.run_intervention`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCALES = {
    "tiny": ["model=tiny_t2i", "dataset=shapes_captions", "dataset.words=nouns", "dataset.n_samples=100"],
    "paper": ["model=sd21", "dataset=coco100_it"],
}
SWAPS = {"tiny": "shapes", "paper": "paper"}


def report_only(out: Path) -> int:
    """Table 4 again from a finished run's ``per_image.csv`` and recorded settings."""
    import json

    import pandas as pd

    from xattr.tasks.intervention import InterventionSettings, write_intervention_report
    from xattr.tasks.report import load_paper

    manifest = out / "info_cmi" / "manifest.json"
    if not (out / "per_image.csv").is_file() or not manifest.is_file():
        print(f"error: {out} holds no finished intervention run (per_image.csv, info_cmi/manifest.json); run "
              "`make infodecomp-intervention` first or pass --out", file=sys.stderr)
        return 2
    recorded = json.loads(manifest.read_text())
    settings = InterventionSettings(**recorded["config"]["settings"])
    table = write_intervention_report(out, pd.read_csv(out / "per_image.csv"), settings,
                                      recorded["config"]["names"], recorded, load_paper(["infodecomp"], "table4"))
    print((out / "intervention.md").read_text())
    print(f"rewrote {out}/intervention.md, table4.csv, table4_paired.csv and run folders "
          f"{', '.join(dict.fromkeys(table['method']))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument("--out", default=None, help="default outputs/infodecomp/<scale>/intervention")
    parser.add_argument("--steps", type=int, default=100, help="Karras noise levels n (the paper: 100)")
    parser.add_argument("--rho", type=float, default=7.0)
    parser.add_argument("--omit", choices=["delete", "underscore"], default="delete")
    parser.add_argument("--swap", choices=["shapes", "paper", "none"], default=None,
                        help="default: shapes at tiny scale, the paper's dictionary at paper scale")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.9)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--figure", type=int, default=4, help="samples in figures/intervention.png")
    parser.add_argument("--report-only", action="store_true",
                        help="recompute table4*.csv, intervention.md and the run folders from --out's per_image.csv "
                             "(no denoiser call; the settings recorded in info_cmi/manifest.json)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/run.yaml (KEY=VALUE)")
    args = parser.parse_args(argv)
    if args.report_only:
        return report_only(Path(args.out or f"outputs/infodecomp/{args.scale}/intervention"))

    from hydra import compose, initialize_config_dir
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from xattr.errors import XattrError
    from xattr.tasks._build import build_dataset, build_model
    from xattr.tasks.intervention import InterventionSettings, run_intervention
    from xattr.tasks.report import load_paper
    from xattr.utils.conf import conf_dir

    out = Path(args.out or f"outputs/infodecomp/{args.scale}/intervention")
    root = [] if os.environ.get("XATTR_ROOT") else [f"paths.root_dir={ROOT}"]
    overrides = [*root, "method=info_cmi", *SCALES[args.scale], *args.overrides]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="run", overrides=overrides)
        names = {"method": "info_cmi", "model": str(cfg.model.name),
                 "dataset": next(o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("dataset="))}
        settings = InterventionSettings(n=args.steps, rho=args.rho, omit=args.omit, bootstrap=args.bootstrap,
                                        fraction=args.fraction, seed=int(cfg.seed),
                                        include_mid=False)
        dataset = build_dataset(cfg, names["dataset"])
        model = build_model(cfg, names, dataset, Path(cfg.paths.cache_dir), str(cfg.device))
        cmi = instantiate(cfg.method, model=model)
        table = run_intervention(model, cmi, dataset, out, settings=settings, swap=args.swap or SWAPS[args.scale],
                                 names=names, batch_size=args.batch, n_figure=args.figure,
                                 config={"overrides": overrides, "method": OmegaConf.to_container(cfg.method),
                                         "dataset": OmegaConf.to_container(cfg.dataset, resolve=True)},
                                 paper_rows=load_paper(["infodecomp"], "table4"))
    except (XattrError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(cause, XattrError):  # a bug, not a user error: the full traceback
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print((out / "intervention.md").read_text())
    print(f"wrote {out}/intervention.md, table4.csv, per_image.csv, maps.npz, figures/intervention.png and "
          f"run folders {', '.join(dict.fromkeys(table['method']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
