"""Attribution metrics, one per module (see conf/metric/ and docs/metrics.md).

Each is called as ``metric(model, x, maps, target, **ground_truth)`` and returns ``[B]`` scores or a
dict of ``[B]`` tensors (``[B,T]`` entries are curves). Unknown ground-truth kwargs are ignored.
"""

from xattr.metrics.box_ratio import BoxRatio
from xattr.metrics.dauc import DAUC
from xattr.metrics.deletion import Deletion
from xattr.metrics.diffid import DiffID
from xattr.metrics.insertion import Insertion
from xattr.metrics.mnim import MNIM
from xattr.metrics.randomization_sanity import RandomizationSanity, write_randomization_report
from xattr.metrics.road import ROAD
from xattr.metrics.seg_ratio import SegRatio

__all__ = ["MNIM", "Insertion", "Deletion", "DAUC", "DiffID", "ROAD", "BoxRatio", "SegRatio", "RandomizationSanity",
           "write_randomization_report"]
