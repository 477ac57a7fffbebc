"""Private base of the path methods: they keep the last call's per-image completeness error for ``diagnostics()``.

``completeness_error = |Σ A − (f_c(x) − f_c(b))| / |f_c(x) − f_c(b)|`` (``xattr.paths.completeness_error``), with
``b`` the start of the method's path (for averaged paths, ``f_c(b)`` is the mean over the paths' starts).
"""

from __future__ import annotations

import torch

from xattr.methods.base import AttributionMethod
from xattr.paths import completeness_error


class PathMethod(AttributionMethod):
    """An attribution method along paths; ``diagnostics()`` -> ``{'completeness_error': [B]}`` of the last call."""

    _last_completeness: torch.Tensor | None = None

    def _record(self, attribution: torch.Tensor, f_end: torch.Tensor, f_start: torch.Tensor) -> torch.Tensor:
        """Store the completeness error of ``attribution`` against ``f_c(x) = f_end``, ``f_c(b) = f_start``."""
        self._last_completeness = completeness_error(attribution, f_end, f_start).detach().cpu()
        return attribution

    def diagnostics(self) -> dict[str, torch.Tensor]:
        if self._last_completeness is None:
            return {}
        return {"completeness_error": self._last_completeness}
