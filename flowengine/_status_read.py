"""``read_status``: the operator's view of a store, through the Store API only.

Two store calls, whatever the number of flows and tokens: ``flow_counts`` and
``token_counts`` (counts the store keeps as it writes, see ``_stats``); then, per
spec, its compiled machine and those counts make a ``SpecStatus`` (``_status``).
Works on every store, so ``flowengine status`` and the web frontend's operator
page show the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence

import pluggy

from flowengine import _plugins
from flowengine._errors import ConfigError, ErrorCode, FlowError
from flowengine._machine import CompiledFlow, compile_flow
from flowengine._records import Token
from flowengine._saving import store_call
from flowengine._spec import FlowSpec
from flowengine._stats import MAX_WINDOW
from flowengine._status import Status, build_spec_status
from flowengine._store import Store

__all__ = ["DEFAULT_REFRESH_WINDOW", "DEFAULT_WINDOW", "read_status"]

#: The window final outcomes and failures are counted over, unless told: a day.
DEFAULT_WINDOW = 86400.0
#: Tokens expiring within this are "expiring", unless told: the keep_fresh window's default (2 h).
DEFAULT_REFRESH_WINDOW = 7200.0


def _check(window: float, refresh_window: float, now: float) -> None:
    if not (math.isfinite(window) and 0 < window <= MAX_WINDOW):
        raise ConfigError(
            f"a status window is more than 0 s and at most {MAX_WINDOW / 86400:g} days (the counts a store "
            f"keeps), not {window!r} s",
            code=ErrorCode.STATUS_WINDOW_INVALID,
        )
    if not (math.isfinite(refresh_window) and refresh_window >= 0):
        raise ConfigError(
            f"a refresh window is a number of seconds >= 0, not {refresh_window!r}",
            code=ErrorCode.STATUS_WINDOW_INVALID,
        )
    if not math.isfinite(now):
        raise ConfigError(f"now must be a time, not {now!r}", code=ErrorCode.STATUS_WINDOW_INVALID)


def _compiled(spec: FlowSpec | None, pm: pluggy.PluginManager | None) -> CompiledFlow | None:
    if spec is None:
        return None
    guards, actions = _plugins.guards_and_actions(pm)
    return compile_flow(spec, guards=guards, actions=actions)


def _find(
    name: str, given: dict[str, FlowSpec], find_spec: Callable[[str], FlowSpec | None] | None
) -> FlowSpec | None:
    if name in given:
        return given[name]
    if find_spec is None:
        return None
    try:
        found = find_spec(name)
    except FlowError:
        return None  # a spec this process cannot load is shown from its counts alone
    return found if found is not None and found.name == name else None


async def read_status(
    store: Store,
    *,
    now: float,
    window: float = DEFAULT_WINDOW,
    refresh_window: float = DEFAULT_REFRESH_WINDOW,
    specs: Iterable[FlowSpec] = (),
    only: Collection[str] | None = None,
    find_spec: Callable[[str], FlowSpec | None] | None = None,
    unsaved: Sequence[Token] | None = None,
    shown: int = 20,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Status:
    """The operator's view of ``store`` at ``now``: per spec, its machine with counts, failures, tokens.

    ``window``: final outcomes, edges and failures are counted over it (whole hours,
    at most a week; ``status_window_invalid`` otherwise). ``refresh_window``: tokens
    expiring within it are ``expiring``. The specs shown are ``only`` (names) when
    given, else every spec the store has flows or tokens of, plus ``specs``; each
    spec's machine comes from ``specs`` or ``find_spec(name)`` (a spec neither
    gives is drawn from its counts alone). ``unsaved``: the tokens this process holds
    unsaved (``AsyncEngine.unsaved_tokens``), or None when it cannot know (another
    process holds them). ``shown``: at most this many tokens needing attention per spec.
    """
    _check(window, refresh_window, now)
    given = {spec.name: spec for spec in specs}
    one = next(iter(only)) if only is not None and len(only) == 1 else None
    flows = await store_call(store.flow_counts(since=now - window, spec=one))
    tokens = await store_call(store.token_counts(now=now, within=refresh_window, provider=one, limit=shown))
    if only is not None:
        names = sorted(set(only))
    else:
        seen = {c.spec for c in flows.states if c.count} | {c.spec for c in flows.steps}
        names = sorted(seen | {c.provider for c in tokens.counts} | set(given))
    return Status(
        now=now,
        window=window,
        refresh_window=refresh_window,
        specs=tuple(
            build_spec_status(
                name,
                _compiled(_find(name, given, find_spec), plugin_manager),
                flows,
                tokens,
                now=now,
                window=window,
                refresh_window=refresh_window,
                unsaved=unsaved,
            )
            for name in names
        ),
    )
