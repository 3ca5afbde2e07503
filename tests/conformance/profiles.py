"""Hypothesis settings for the conformance properties.

Two profiles: ``ci`` (the default) runs a bounded number of examples, derandomized, so every
run tries the same examples and a failure reproduces as is; ``long`` (``scripts/fuzz-http``)
runs ``CORRAL_FUZZ_FACTOR`` times as many, from the seed given with ``--hypothesis-seed``,
keeping failures in a database outside the checkout. ``CORRAL_FUZZ_PROFILE`` picks one.
Profiles are registered, not loaded: other tests that use Hypothesis keep their own settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE = os.environ.get("CORRAL_FUZZ_PROFILE", "ci")
FACTOR = int(os.environ.get("CORRAL_FUZZ_FACTOR", "5")) if PROFILE == "long" else 1
CACHE = Path(os.environ.get("CORRAL_CACHE_DIR", Path.home() / ".cache" / "corral"))

# one server per test, shared by its examples (each uses a connection of its own)
_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SHARED,
)
settings.register_profile(
    "long",
    deadline=None,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(str(CACHE / "hypothesis-conformance")),
    print_blob=True,
    suppress_health_check=_SHARED,
)
if PROFILE not in ("ci", "long"):
    raise ValueError(f"CORRAL_FUZZ_PROFILE is {PROFILE!r}; use 'ci' or 'long'")


def budget(examples: int) -> settings:
    """The settings of one property: ``examples`` examples in ``ci``, FACTOR times more in ``long``."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * FACTOR)
