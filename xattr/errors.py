"""The one exception type the CLI turns into a single-line message (no traceback)."""


class XattrError(Exception):
    """Bad input or missing resource. The message is one line naming the bad value and the fix."""


def find_xattr_error(error: BaseException) -> XattrError | None:
    """The XattrError in ``error``'s cause/context chain (Hydra wraps errors raised in instantiate)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, XattrError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
