"""The path-attribution core shared by every path method (IG, Blur IG, Guided IG, Expected Gradients, IG², SPI,
DiffIG): waypoints and schedules (``waypoints``), batched path integrals and the completeness error
(``integrate``), baselines (``baselines``) and the stick-breaking schedule sampler (``stick_breaking``).
No imports from methods or tasks; see docs/paths.md."""

from xattr.paths.baselines import gaussian_blur, make_baseline
from xattr.paths.integrate import (
    PathResult,
    class_score,
    completeness_error,
    integrate_nodes,
    path_attribution,
    score_and_gradient,
    waypoint_nodes,
)
from xattr.paths.stick_breaking import (
    StickBreakingDraw,
    sample_alpha,
    stick_breaking_path_schedule,
    stick_breaking_schedule,
)
from xattr.paths.waypoints import (
    GeneratorPath,
    Path,
    SchedulePath,
    StraightPath,
    check_schedule,
    refine_schedule,
)

__all__ = ["Path", "StraightPath", "SchedulePath", "GeneratorPath", "check_schedule", "refine_schedule", "PathResult",
           "path_attribution", "integrate_nodes", "waypoint_nodes", "score_and_gradient", "class_score",
           "completeness_error", "gaussian_blur", "make_baseline", "StickBreakingDraw", "stick_breaking_schedule",
           "stick_breaking_path_schedule", "sample_alpha"]
