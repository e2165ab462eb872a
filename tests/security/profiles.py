"""The hypothesis profiles of the fuzz tests (SECURITY.md 12): ``ci`` (the default) and ``long``.

``ci`` is bounded and derandomized: CI runs it in seconds and it never flakes. ``long``
runs thousands of random examples, for hunting. Hypothesis reads ``--hypothesis-profile``
before it collects ``tests/security/``, so the profiles must be registered by then: the
top-level ``tests/conftest.py`` imports this module; without that,
``pytest -p tests.security.profiles --hypothesis-profile=long`` does the same.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

__all__ = ["PROFILES"]

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
PROFILES = ("ci", "long")

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_OK
)
settings.register_profile("long", max_examples=3000, deadline=None, suppress_health_check=_SLOW_OK)
