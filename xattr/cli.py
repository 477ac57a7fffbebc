"""``xattr run|train|report``: command dispatch only; what a command does lives in ``xattr.tasks``.

``run`` and ``train`` hand the rest of the command line to a Hydra main (``conf/run.yaml`` /
``conf/train.yaml``), so every Hydra feature works: ``--help``, ``--cfg job``, ``-m`` sweeps,
``key=value`` overrides. ``report`` is a plain argparse command.

User errors (``XattrError``, unknown config options, bad overrides) end in ONE line
``error: <message>`` on stderr with exit code 2 and no traceback; Ctrl-C ends in one line
``interrupted: <what is kept>`` with exit code 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from xattr.errors import XattrError, find_xattr_error
from xattr.utils.conf import conf_dir

CONF_DIR = conf_dir()
USER_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

USAGE = """usage: xattr COMMAND [ARGS]

Feature-attribution experiment suite (Hydra configs in {conf}).

commands:
  run [hydra overrides]     attribute a model on a dataset with a method, score metrics, write a run folder
                            e.g. xattr run method=saliency model=tiny_cnn dataset=shapes
                                 xattr run -m method=saliency,integrated_gradients
                                 xattr run --help | --cfg job
  train [hydra overrides]   train a network the suite needs (task=classifier|denoiser|alpha_unet)
                            e.g. xattr train task=classifier model=tiny_cnn dataset=shapes
  report RUN_DIR... [--by KEY] [--out DIR] [--paper CSV] [--difficulty] [--paired METHOD] [--strict] [--pool]
                            methods x metrics table (markdown, CSV, LaTeX) from run / multirun folders

Run `xattr report --help` for report options.
"""


def _one_line(text: str) -> str:
    """Collapse a possibly multi-line message into one line."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not parts:
        return "unknown error"
    joined = parts[0]
    for part in parts[1:]:
        joined += (" " if joined.endswith((".", ":", ";")) else "; ") + part
    return joined


def _group_options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _unknown_key_message(key: str, command: str, args: list[str]) -> str:
    """An override of a key the composed config does not have: the closest key and all of them. (Hydra's
    own advice, ``+key=value``, would only get the key refused by the config schema, or ignored.)"""
    from xattr.utils.schema import unknown_key

    parent = key.rpartition(".")[0]
    if not parent:
        from xattr.tasks._schema import known_keys

        return unknown_key(key, known_keys(command), f"conf/{command}.yaml")
    try:  # the keys of the parent node: the config composed without this override
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from omegaconf import DictConfig, OmegaConf

        GlobalHydra.instance().clear()
        rest = [a for a in args if not a.startswith("-") and a.split("=", 1)[0].lstrip("+~") != key]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            try:
                cfg = compose(config_name=command, overrides=rest)
            except Exception:  # noqa: BLE001 - a sweep (a,b): the keys without the swept overrides
                cfg = compose(config_name=command, overrides=[a for a in rest if "," not in a])
        node = OmegaConf.select(cfg, parent)
        known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    except Exception:  # noqa: BLE001 - name no keys rather than fail while reporting an error
        known = []
    if not known:
        return f"unknown key {key}; see `xattr {command} --cfg job` for the keys of {parent}"
    return unknown_key(key, known, parent)


def _config_error_message(error: BaseException, command: str = "run", args: list[str] = ()) -> str | None:
    """One-line text for a Hydra/OmegaConf composition error, None if ``error`` is not one."""
    import re

    from hydra.errors import (
        ConfigCompositionException,
        HydraException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, MissingConfigException):
        missing = error.missing_cfg_file or ""
        match = re.search(r"Could not (?:find|load) '([^']+)'", str(error))
        path = match.group(1) if match else missing
        if "/" in path:
            group, choice = path.rsplit("/", 1)
            options = sorted(error.options or []) or _group_options(group)
            if options:
                return f"unknown {group} option {choice!r}; choose one of {', '.join(options)} (conf/{group}/)"
            return f"unknown {group} option {choice!r}; conf/{group}/ has no configs"
        return _one_line(error)
    unknown = re.match(r"Could not override '([^']+)'\.\nTo append to your config use", str(error))
    if isinstance(error, ConfigCompositionException) and unknown:
        return _unknown_key_message(unknown.group(1), command, list(args))
    if isinstance(error, OverrideParseException):
        return _one_line(f"cannot parse override: {error}")
    # a launcher plugin that is not installed: Hydra's plugin scan does not know the class, or (once scanned
    # in this process) instantiate cannot import it
    plugin = re.search(r"(?:Unknown plugin class : |Error locating target )'(hydra_plugins\.(hydra_\w+_launcher)\.[\w.]+)'",
                       str(error))
    if plugin:
        chosen = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra/launcher=")]
        launcher = f"hydra/launcher={chosen[-1]}" if chosen else f"the launcher {plugin.group(1).rsplit('.', 1)[-1]}"
        return (f"{launcher} needs the package {plugin.group(2).replace('_', '-')}, which is not installed; "
                "install the cluster extra: pip install 'xattr[cluster]'")
    if isinstance(error, (HydraException, OmegaConfBaseException)):
        return _one_line(error)
    return None


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()
    return USER_ERROR


def _interrupted(error: KeyboardInterrupt) -> int:
    """One line for Ctrl-C: what the interrupted run kept (its message), else just that it stopped."""
    sys.stderr.write(f"interrupted: {_one_line(str(error)) if str(error).strip() else 'stopped by Ctrl-C'}\n")
    sys.stderr.flush()
    return INTERRUPTED


def _hydra_command(command: str, args: list[str]) -> int:
    """Run ``conf/<command>.yaml`` through ``hydra.main`` with ``args`` as the command line."""
    import hydra
    from omegaconf import DictConfig

    from xattr.tasks import sweeps

    sweeps.take_started()  # forget a sweep an earlier call in this process left noted
    job_errors: list[str] = []

    def task_function(cfg: DictConfig):
        # User errors are caught here, inside the job, so Hydra does not add its own lines and a sweep goes on
        # with its other jobs (as Hydra's basic launcher does). A single run keeps its error here; a sweep's job
        # may run in another process (joblib, submitit), so it records its outcome in its folder and the
        # launching process names every failed job from the folders at the end (xattr.tasks.sweeps).
        output_dir = _job_output_dir()
        if output_dir is not None:
            (output_dir / sweeps.OUTCOME).unlink(missing_ok=True)
        try:
            # imported here so that --help, --cfg and config errors do not pay for importing torch
            if command == "run":
                from xattr.tasks.run import run as task
            else:
                from xattr.tasks.train import run as task
            result = task(cfg)
        except Exception as error:  # noqa: BLE001 - only XattrError is swallowed, the rest re-raised
            found = find_xattr_error(error)
            if found is None:
                raise
            if output_dir is None:
                job_errors.append(str(found))
            else:
                sweeps.write_outcome(output_dir, str(found))
            return None
        if output_dir is not None:
            sweeps.write_outcome(output_dir, None)
        return result

    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=command)(task_function)
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    # the launcher presets (conf/hydra/launcher/) share their names with the plugins' schemas, which Hydra
    # validates them against (typos refused) with a deprecation warning on every command
    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
    # Hydra prints its own multi-line report unless HYDRA_FULL_ERROR is set; with it set the original
    # exception reaches us and we reduce user errors to one line ourselves.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [f"xattr {command}", *args]
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else _fail(str(code)))
    except Exception as error:  # noqa: BLE001 - classify: user error → one line, bug → traceback
        found = find_xattr_error(error)
        if found is not None:
            return _fail(str(found))
        message = _config_error_message(error, command, args)
        if message is not None:
            return _fail(message)
        raise
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
        _forget_hydra_job()
    started = sweeps.take_started()
    if started is not None:
        job_errors += sweeps.failed_jobs(*started)
    for message in job_errors:
        _fail(message)
    return USER_ERROR if job_errors else 0


def _forget_hydra_job() -> None:
    """Hydra keeps the finished job's config (``HydraConfig``) in the process after ``hydra.main`` returns; a later
    in-process ``xattr.tasks.run.run(cfg)`` would then label its folder with that job's config names."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


def _job_output_dir():
    """The job's folder in a sweep (a ``pathlib.Path``), None for a single run or without Hydra."""
    try:
        from pathlib import Path

        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return Path(hydra_cfg.runtime.output_dir)
    except Exception:  # noqa: BLE001 - no Hydra context
        pass
    return None


def _report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xattr report",
        description="Methods x metrics table (mean ± std) from run folders and multirun folders "
                    "(searched recursively for completed runs; incomplete ones are named on stderr). Prints "
                    "markdown; writes report.csv, report.md and report.tex.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders or multirun folders")
    parser.add_argument("--by", action="append", default=[], metavar="KEY",
                        help="group rows by a config key of each run's config (manifest.json), e.g. method.beta "
                             "(repeatable)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where report.{csv,md,tex} go (default: the first RUN_DIR)")
    parser.add_argument("--paper", action="append", default=[], metavar="CSV",
                        help="paper values (columns table,model,method,metric,mean,std), shown side by side; "
                             "a bare name such as coiba means xattr/paper/coiba.csv (repeatable)")
    parser.add_argument("--paper-table", default=None, metavar="NAME",
                        help="use only rows of this `table` from the paper CSVs")
    parser.add_argument("--difficulty", action="store_true",
                        help="difficulty-aware breakdown (per-sample confidence bins) of every run")
    parser.add_argument("--bins", type=int, default=20, help="number of difficulty bins (default 20)")
    parser.add_argument("--paired", default=None, metavar="METHOD",
                        help="also write paired.csv/.md: METHOD minus every other method on the same images")
    parser.add_argument("--precision", type=int, default=3, help="decimals in the tables (default 3)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse (exit 2) when a run folder below RUN_DIR is incomplete or failed")
    parser.add_argument("--pool", action="store_true",
                        help="pool runs of one row even when they scored the same images (each image then "
                             "counts once per run)")
    return parser


def _report_command(args: list[str]) -> int:
    parser = _report_parser()
    options = parser.parse_args(args)
    from xattr.tasks.report import report

    try:
        report(options.run_dirs, by=options.by, out=options.out, paper=options.paper,
               paper_table=options.paper_table, difficulty=options.difficulty, n_bins=options.bins,
               precision=options.precision, paired=options.paired, strict=options.strict,
               pool_runs=options.pool)
    except XattrError as error:
        return _fail(str(error))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xattr`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE.format(conf=CONF_DIR))
        return 0 if argv else USER_ERROR
    command, rest = argv[0], argv[1:]
    try:
        if command in ("run", "train"):
            return _hydra_command(command, rest)
        if command == "report":
            return _report_command(rest)
    except XattrError as error:
        return _fail(str(error))
    except SystemExit as exit_:  # argparse errors (exit 2) and --help (exit 0)
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt as error:  # Ctrl-C: a run records state=interrupted and says what it kept
        return _interrupted(error)
    except BrokenPipeError:  # `xattr run --help | head`
        sys.stderr.close()
        return 0
    return _fail(f"unknown command {command!r}; choose one of run, train, report (see `xattr --help`)")


if __name__ == "__main__":
    sys.exit(main())
