"""Changing providers and aliases safely: check the whole resulting config first, then write,
then apply it to the running gateway, and undo the write if applying still fails.

All of it runs under the admin lock, so two changes never interleave in this process; the
undo covers the rare case where another replica changed the database in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from corral.config.schema import Config
from corral.control.merge import merge
from corral.control.plane import ControlPlane
from corral.errors import ConfigError
from corral.gateway import Gateway
from corral.http.admin.input import from_config_error

T = TypeVar("T")
ProviderData = Mapping[str, Any]
AliasData = tuple[str, Mapping[str, Any]]


async def stored(plane: ControlPlane) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """The database's providers (secrets decrypted, for validation only) and aliases."""
    providers = [plane.store.providers.reveal(r) for r in await plane.store.providers.list()]
    aliases = [(a.name, a.spec) for a in await plane.store.aliases.list()]
    return providers, aliases


def check(plane: ControlPlane, providers: Sequence[ProviderData], aliases: Sequence[AliasData]) -> Config:
    """The effective config these entries would give. Raises a 400 naming the problem."""
    try:
        return merge(plane.base, providers, aliases)
    except ConfigError as exc:
        raise from_config_error(exc) from None


async def write_and_apply(
    plane: ControlPlane,
    gateway: Gateway,
    write: Callable[[], Awaitable[T]],
    undo: Callable[[], Awaitable[object]],
) -> T:
    """Run ``write``, then apply the new config; if it does not validate, ``undo`` and 400."""
    result = await write()
    try:
        await plane.apply(gateway)
    except ConfigError as exc:
        await undo()
        raise from_config_error(exc) from None
    plane.changed()  # every other worker applies it too (corral.cluster), within a second
    return result
