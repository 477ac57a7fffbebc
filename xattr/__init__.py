"""xattr — feature-attribution experiment suite for image models.

Contracts (see ``docs/architecture.md``): images are float ``[B,3,H,W]`` in ``[0,1]``; every zoo
model normalises inside; a method is ``Method(model, **hparams).attribute(x, target)``; a metric
is ``Metric(**settings)(model, x, maps, target, **ground_truth)``.
"""

from xattr.errors import XattrError

__all__ = ["XattrError"]
__version__ = "0.1.0"
