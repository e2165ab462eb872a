"""The plugin manager: every adapter is found through the ``flowengine`` entry points.

First-party adapters register exactly as third-party packages do, so nothing
here names one. ``get_plugin_manager()`` loads them once; tests may build
their own manager with ``new_plugin_manager()`` and register extra plugins.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from flowengine import hookspecs
from flowengine._bounded import text_problems
from flowengine._errors import ConfigError, PluginError

if TYPE_CHECKING:
    from flowengine._events import RequestEvent
    from flowengine._http import Transport, TransportConfig
    from flowengine._machine import Action, Guard
    from flowengine._records import Flow
    from flowengine._sandbox import Sandbox
    from flowengine._spec import FlowSpec
    from flowengine._store import Store

__all__ = [
    "check_plugins",
    "get_plugin_manager",
    "guards_and_actions",
    "lazy_exports",
    "new_plugin_manager",
    "notify_request",
    "observing_requests",
    "open_store",
    "open_transport",
    "spec_paths",
]

ENTRY_POINT_GROUP = "flowengine"
log = logging.getLogger("flowengine")


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing each public name from its submodule on first use.

    Every installed plugin is imported whenever plugins are looked up (even to
    find a spec), so a plugin package keeps its hooks light and lets its public
    names (``names``: name -> relative submodule) load when someone uses them.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__


def new_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager with flowengine's hookspecs and, by default, every installed plugin."""
    pm = pluggy.PluginManager("flowengine")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        _load_entry_points(pm, ENTRY_POINT_GROUP)
        check_plugins(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager, group: str) -> None:
    """Register the plugin of every ``group`` entry point installed, first on ``sys.path`` first.

    What ``pm.load_setuptools_entrypoints(group)`` does, for a fraction of its cost:
    pluggy imports ``importlib.metadata`` and parses the entry points of every
    installed distribution (tens of milliseconds at each start, with a hundred
    installed). When every ``sys.path`` entry is a folder and no import hook
    provides distributions of its own, the ``*.dist-info``/``*.egg-info`` folders
    are read directly, and only an ``entry_points.txt`` naming ``[group]`` is
    parsed; otherwise ``importlib.metadata`` finds them. A name already registered
    (the same distribution seen twice on ``sys.path``) or blocked is skipped, as
    pluggy does.
    """
    found = _scan_entry_points(group)
    if found is None:
        from importlib.metadata import entry_points

        found = [(e.name, e.value) for e in entry_points(group=group)]
    for name, value in found:
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        module, _, attr = value.partition(":")
        plugin: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.split("[", 1)[0].strip().split(".")):
            plugin = getattr(plugin, part)
        pm.register(plugin, name=name)


def _scan_entry_points(group: str) -> list[tuple[str, str]] | None:
    """``(name, value)`` of every ``group`` entry point in the metadata folders on ``sys.path``.

    None when some distribution could live where this does not look: a ``sys.path``
    entry that is not a folder (a zip), or an import hook that finds distributions.
    """
    finders = [f for f in sys.meta_path if hasattr(f, "find_distributions")]
    if any(f is not importlib.machinery.PathFinder for f in finders):
        return None
    header, found = f"[{group}]", []
    for entry in sys.path:
        folder = entry or "."
        if not os.path.isdir(folder):
            if os.path.exists(folder):
                return None
            continue
        with os.scandir(folder) as children:
            infos = sorted(c.path for c in children if c.name.endswith((".dist-info", ".egg-info")))
        for info in infos:
            try:
                with open(os.path.join(info, "entry_points.txt"), encoding="utf-8") as file:
                    text = file.read()
            except OSError:
                continue
            if header in text:
                found += _section(text, header)
    return found


def _section(text: str, header: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of the ``header`` section of an ``entry_points.txt``."""
    lines, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == header
        elif inside and line and not line.startswith(("#", ";")) and "=" in line:
            name, _, value = line.partition("=")
            lines.append((name.strip(), value.strip()))
    return lines


def check_plugins(pm: pluggy.PluginManager) -> None:
    """Fail loudly on a hook implementation no hookspec matches (a misspelled hook name).

    pluggy would otherwise keep it and never call it: the plugin would silently do nothing.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}", code="plugin_error") from None


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, loaded on first use."""
    return new_plugin_manager()


def _pm(pm: pluggy.PluginManager | None) -> pluggy.PluginManager:
    return pm if pm is not None else get_plugin_manager()


def open_store(url: str, pm: pluggy.PluginManager | None = None) -> Store:
    """The Store a plugin provides for ``url``; ``PluginError`` when none does."""
    if not isinstance(url, str):
        raise ConfigError(f"a store URL is text, not {type(url).__name__}", code="store_url_invalid")
    for problem in text_problems(URL=url):  # no driver could send it (a lone surrogate)
        raise ConfigError(f"the store {problem}", code="store_url_invalid")
    store: Store | None = _pm(pm).hook.flowengine_store(url=url)
    if store is None:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise PluginError(
            f"no installed plugin provides a store for {scheme!r} URLs", code="store_unsupported"
        )
    return store


def open_transport(config: TransportConfig, pm: pluggy.PluginManager | None = None) -> Transport:
    """The Transport a plugin provides; ``PluginError`` when none is installed."""
    transport: Transport | None = _pm(pm).hook.flowengine_transport(config=config)
    if transport is None:
        raise PluginError("no installed plugin provides an HTTP transport", code="transport_unsupported")
    return transport


def spec_paths(pm: pluggy.PluginManager | None = None) -> list[Path]:
    """Folders where named specs live, in plugin order."""
    return [Path(p) for paths in _pm(pm).hook.flowengine_spec_paths() for p in paths]


def _merged(results: list[Mapping[str, Any]], what: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for result in results:
        for name, fn in result.items():
            if name in merged and merged[name] is not fn:
                raise PluginError(f"two plugins define the {what} {name!r}", code="plugin_conflict")
            merged[name] = fn
    return merged


def guards_and_actions(pm: pluggy.PluginManager | None = None) -> tuple[dict[str, Guard], dict[str, Action]]:
    """The guards and actions a spec may name: the built-ins and what plugins contribute.

    The one place they are merged (the engine, the CLI's ``spec validate`` and
    ``load_spec``'s name check all ask here); a plugin may not redefine a built-in.
    """
    from flowengine._machine import BUILTIN_ACTIONS, BUILTIN_GUARDS

    hook = _pm(pm).hook
    guards = _merged([BUILTIN_GUARDS, *hook.flowengine_guards()], "guard")
    actions = _merged([BUILTIN_ACTIONS, *hook.flowengine_actions()], "action")
    return guards, actions


def _listening(caller: pluggy.HookCaller) -> list[Any]:
    """The hook's implementations that are listening now, in the order pluggy calls them.

    An observer that is idle most of the time (the OpenTelemetry plugin until the
    application sets a provider) gives its hook function a ``listening`` attribute, a
    function of no arguments: while it returns False the observer is skipped, and when
    none is left the event is not even prepared (docs/plugins.md).
    """
    found = []
    for impl in reversed(caller.get_hookimpls()):
        listening = getattr(impl.function, "listening", None)
        if listening is None or listening():
            found.append(impl)
    return found


def notify_transition(
    flow: Flow, event: str, source: str, dest: str, pm: pluggy.PluginManager | None = None
) -> None:
    """Tell every listening ``flowengine_transition`` observer about a stored transition.

    Observers always get the redacted flow; with none listening there is no one to
    redact it for, so neither the copy nor a call is made. An observer that raises
    stops the others, as a pluggy call would: the driver logs it.
    """
    observers = _listening(_pm(pm).hook.flowengine_transition)
    if not observers:
        return
    given = {"flow": flow.redacted(), "event": event, "source": source, "dest": dest}
    for impl in observers:
        impl.function(**{name: given[name] for name in impl.argnames})


def observing_requests(pm: pluggy.PluginManager | None = None) -> bool:
    """True when some ``flowengine_request`` observer is listening: else no event need be made."""
    return bool(_listening(_pm(pm).hook.flowengine_request))


def notify_request(event: RequestEvent, pm: pluggy.PluginManager | None = None) -> None:
    """Tell every listening ``flowengine_request`` observer about one request attempt.

    Each observer is called on its own: one that raises is logged and the
    others still see the event (an observer is other people's code).
    """
    for impl in _listening(_pm(pm).hook.flowengine_request):
        try:
            impl.function(*([event] if impl.argnames else []))
        except Exception:
            log.exception("a flowengine_request observer (%s) failed", impl.plugin_name)


def open_sandbox(spec: FlowSpec, url: str | None = None, pm: pluggy.PluginManager | None = None) -> Sandbox:
    """A sandbox for ``spec``'s provider (started locally, or the one at ``url``)."""
    sandbox: Sandbox | None = _pm(pm).hook.flowengine_sandbox(spec=spec, url=url)
    if sandbox is None:
        raise PluginError(
            f"no installed plugin provides a sandbox for spec {spec.name!r}", code="sandbox_unsupported"
        )
    return sandbox
