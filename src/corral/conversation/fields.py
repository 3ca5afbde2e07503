"""Reading fields of a client's request body: one check for numbers, one error shape.

Every reader of a client API (``corral.conversation.<api>.requests``) checks its fields with
these; a bad value becomes an ``InvalidRequest`` naming the parameter, so the client sees which
field to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from corral.errors import InvalidRequest


def fail(param: str, message: str) -> NoReturn:
    raise InvalidRequest(message, param=param)


def number(body: Mapping[str, Any], name: str, *, integral: bool, where: str = "") -> Any:
    """The number ``body[name]``, or None when absent/null; InvalidRequest for anything else.

    ``where`` prefixes the parameter's name in errors (``options.`` for a nested field)."""
    value = body.get(name)
    if value is None:
        return None
    param = f"{where}{name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(param, f"{param} must be {'an integer' if integral else 'a number'}, got {value!r}.")
    if integral and isinstance(value, float):
        if not value.is_integer():
            fail(param, f"{param} must be an integer, got {value!r}.")
        return int(value)
    return value
