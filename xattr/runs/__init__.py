"""The run folder: what ``xattr run`` writes and ``xattr report`` reads (one format, one module).

Run folder (Hydra's output dir)::

    .hydra/            Hydra's log of the last invocation: config, overrides (written by Hydra before the
                       task runs, also by a refused one; never read for results, except by older folders)
                       and ``.hydra/xattr_job.json``: a sweep job's outcome ``{"error": …}`` for this invocation
    .lock              held by the process running in the folder (a second one is refused)
    xattr.log          log of the jobs (Hydra; appended)
    manifest.json      written once by the folder's first run: the resume fingerprint (what must not
                       change on resume), under ``config`` the composed config with the names used (what
                       ``xattr report`` reads for ``--by``), and under ``provenance`` package versions,
                       Python, host and the xattr checkout's git commit/dirty flag (never compared on resume)
    status.json        state running|interrupted|failed|complete, samples done/total, names, timings, error;
                       every write adds pid, host, heartbeat (UTC) and on Linux boot_id, pid_namespace: a ``running`` status whose process
                       is gone on this host reads as killed (:mod:`xattr.runs.provenance`)
    partial/           while running: one batch-NNNNN.npz chunk per finished batch (removed when the
                       run completes; runs before manifest.json kept their fingerprint here)
    maps.npz           maps [N,C,H,W], ids [N], targets [N], labels [N]
    per_sample.csv     id, label, target, pred, confidence, metric, value (one row per sample and metric)
    curves.npz         [N,T] curves returned by metrics (e.g. insertion.curve), ids
    summary.csv        method, model, dataset, metric, mean, std, n
    summary.md         the same as a markdown table
    figures/overview.png   first n_figure images with |map| overlays
    DONE               written last: the run is complete

A folder is complete when ``DONE`` exists (:func:`is_complete`); both the run task and the report use
that one definition. One without ``DONE`` that the run task wrote to (``status.json``, ``manifest.json``
or ``partial/``) is incomplete (:func:`scan_runs`). Every file is written atomically (:mod:`xattr.utils.io`).

A chunk (:mod:`xattr.runs.chunks`) holds one batch: ``ids``, the model kind's per-sample entries (for a
classifier ``labels``, ``targets``, ``preds``, ``confidence``), ``maps``, and ``value__<name>`` ``[B]`` /
``curve__<name>`` ``[B,T]`` arrays (metric values, method diagnostics, curves). ``per_sample.csv`` has the
columns ``id``, the kind's columns, ``metric``, ``value``; ``maps.npz`` ``maps``, ``ids`` and the kind's
maps fields.

Modules: :mod:`~xattr.runs.folder` (:class:`RunFolder`: lock, open, manifest, status, chunks, ``DONE``,
reading; :func:`find_runs`, :func:`scan_runs`), :mod:`~xattr.runs.chunks` (chunk arrays and their merge),
:mod:`~xattr.runs.writers` (per_sample.csv, summary.csv/.md, maps.npz, curves.npz, the overview figure,
the markdown table writer), :mod:`~xattr.runs.provenance` (what the manifest records about the software, what
a status records about its process, and whether that process lives).
"""

from xattr.runs.chunks import Results, chunk_arrays
from xattr.runs.folder import RunFolder, find_runs, is_complete, manifest, no_complete_runs, scan_runs
from xattr.runs.writers import markdown_table, summarise

__all__ = ["RunFolder", "Results", "chunk_arrays", "find_runs", "is_complete", "manifest", "markdown_table",
           "no_complete_runs", "scan_runs", "summarise"]
