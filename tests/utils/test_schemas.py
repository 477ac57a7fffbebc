"""xattr.utils.schema: strict types, schemas from signatures, interpolations that do not resolve here."""

from __future__ import annotations

from omegaconf import OmegaConf
from pydantic import BaseModel, Field

from xattr.utils.schema import STRICT, UNRESOLVED, check, check_target, plain


def target(size: int = 8, scale: float = 1.0, sizes: tuple[int, int] = (1, 2), flag=True, name: str | None = None):
    return size, scale, sizes, flag, name


def test_signature_schema_types_ranges_and_unknown_keys():
    assert check_target({"_target_": "x", "size": 3, "scale": 2, "sizes": [3, 4], "flag": False}, target, "n.",
                        "it") == []
    problems = check_target({"size": "3", "scale": True, "sizes": [1], "flag": "no", "nmae": "a"}, target, "n.",
                            "it", ranges={"size": Field(ge=1)})
    assert problems == ["n.size=3 is not valid: expected an integer >= 1 (it is the string '3', as ${oc.env:VAR} "
                        'gives: write "${oc.decode:${oc.env:VAR}}" with the double quotes, or the number itself)',
                        "n.scale=true is not valid: expected a number",
                        "n.sizes=[1] is not valid: expected a list", "n.flag=no is not valid: expected true or false",
                        "unknown key n.nmae (did you mean n.name?); it has the keys size, scale, sizes, flag, name"]
    assert check_target({"size": 0}, target, "n.", "it", ranges={"size": Field(ge=1)}) == [
        "n.size=0 is not valid: expected an integer >= 1"]


def test_unresolvable_interpolations_are_not_checked():
    cfg = OmegaConf.create({"paths": {"root_dir": "${oc.env:NO_SUCH_VAR_XATTR}", "cache_dir": 3}})
    data = plain(cfg)
    assert data["paths"]["root_dir"] is UNRESOLVED

    class Paths(BaseModel):
        model_config = STRICT
        root_dir: str | None = None
        cache_dir: str | None = None

    class Top(BaseModel):
        model_config = STRICT
        paths: Paths

    assert check(data, Top) == ["paths.cache_dir=3 is not valid: expected a string or null"]
