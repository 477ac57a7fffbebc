"""The run folder: what ``xattr run`` writes and ``xattr report`` reads (one format, one module).

Run folder (Hydra's output dir)::

    .hydra/            composed config, overrides (written by Hydra)
    xattr.log          log of the job (Hydra)
    status.json        state running|failed|complete, samples done, names, timings, error
    partial/           while running: manifest.json (what must not change on resume) and one
                       batch-NNNNN.npz chunk per finished batch (removed when the run completes)
    maps.npz           maps [N,C,H,W], ids [N], targets [N], labels [N]
    per_sample.csv     id, label, target, pred, confidence, metric, value (one row per sample and metric)
    curves.npz         [N,T] curves returned by metrics (e.g. insertion.curve), ids
    summary.csv        method, model, dataset, metric, mean, std, n
    summary.md         the same as a markdown table
    figures/overview.png   first n_figure images with |map| overlays
    DONE               written last: the run is complete

A folder is complete when ``DONE`` exists (:func:`is_complete`); both the run task and the report use
that one definition. Every file is written atomically (:mod:`xattr.utils.io`).

A chunk (:mod:`xattr.runs.chunks`) holds one batch: ``ids``, the model kind's per-sample entries (for a
classifier ``labels``, ``targets``, ``preds``, ``confidence``), ``maps``, and ``value__<name>`` ``[B]`` /
``curve__<name>`` ``[B,T]`` arrays (metric values, method diagnostics, curves). ``per_sample.csv`` has the
columns ``id``, the kind's columns, ``metric``, ``value``; ``maps.npz`` ``maps``, ``ids`` and the kind's
maps fields.

Modules: :mod:`~xattr.runs.folder` (:class:`RunFolder`: open, manifest, status, chunks, ``DONE``,
reading; :func:`find_runs`), :mod:`~xattr.runs.chunks` (chunk arrays and their merge),
:mod:`~xattr.runs.writers` (per_sample.csv, summary.csv/.md, maps.npz, curves.npz, the overview figure,
the markdown table writer).
"""

from xattr.runs.chunks import Results, chunk_arrays
from xattr.runs.folder import RunFolder, find_runs, is_complete, manifest
from xattr.runs.writers import markdown_table, summarise

__all__ = ["RunFolder", "Results", "chunk_arrays", "find_runs", "is_complete", "manifest", "markdown_table",
           "summarise"]
