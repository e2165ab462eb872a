"""``flowengine doctor``: is everything a newcomer's setup needs in place, and how to fix what is not.

Each check prints one line (``ok``, ``warn`` or ``FAIL``) and, when it is
not ok, a ``fix:`` line. Required checks fail the command (exit 4): Python,
the store (URL, reachable, readable with its key, writable), the spec
folders and specs, the config file, and a sandbox named by
``FLOWENGINE_SANDBOX_URL``. Optional ones only warn (exit 0): extras that are
not installed and Graphviz's ``dot``. ``--dev`` adds what contributors need
to run the whole test suite (Chromium for the browser test, Playwright, pytest);
with it, those fail too.

Doctor reads and never creates: a SQLite store that does not exist yet is
reported as such, and the write check takes and gives back a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import attrs
import click
from flowengine import FlowError, PluginError, Store, open_sandbox, open_store
from flowengine.cli import (
    EXIT_FAILED,
    EXIT_OK,
    config_path,
    load_config,
    readable_by_others,
    sandbox_url,
    spec_argument,
    spec_folders,
    spec_names,
    store_option,
    store_url,
)

from .common import display_store_url, printable

__all__ = ["Check", "doctor"]

Status = Literal["ok", "warn", "FAIL"]

#: What each extra is for, to say why a missing one matters (or not).
EXTRA_USES = {
    "sandbox": "`--sandbox` and `flowengine sandbox serve`",
    "web": "`flowengine web serve`",
    "redis": "redis:// stores",
    "postgres": "postgresql:// stores",
    "celery": "a Celery fleet and `batch refresh --via celery`",
    "otel": "OpenTelemetry spans and metrics",
}
#: The Chromium the browser test (tests/web/test_browser.py) drives.
CHROMIUM = Path("/usr/bin/chromium")


@attrs.frozen
class Check:
    """One finding: what was checked, how it went, and how to fix it when it is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _python() -> Iterator[Check]:
    import importlib.metadata

    wanted = importlib.metadata.metadata("flowengine")["Requires-Python"] or ""
    match = re.search(r">=\s*(\d+)\.(\d+)", wanted)
    need = (int(match[1]), int(match[2])) if match else (3, 11)
    have = sys.version_info[:2]
    detail = f"{sys.version.split()[0]} (flowengine needs >= {need[0]}.{need[1]})"
    if have >= need:
        yield Check("python", "ok", detail)
    else:
        yield Check("python", "FAIL", detail, f"install Python {need[0]}.{need[1]} or newer")


def _extras() -> Iterator[Check]:
    """Each extra whose packages are all installed is ok; one that is not only warns (it is optional)."""
    import importlib.metadata

    wanted: dict[str, list[str]] = {}
    for requirement in importlib.metadata.requires("flowengine") or []:
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if marker and name and marker[1] in EXTRA_USES:
            wanted.setdefault(marker[1], []).append(name[0])
    for extra, packages in wanted.items():
        missing = [p for p in packages if not _installed(p)]
        if missing:
            yield Check(
                f"extra {extra}",
                "warn",
                f"not installed ({', '.join(missing)} missing); needed only for {EXTRA_USES[extra]}",
                f"pip install 'flowengine[{extra}]'",
            )
        else:
            yield Check(f"extra {extra}", "ok", f"installed, for {EXTRA_USES[extra]}")


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@contextlib.contextmanager
def _skipped_records() -> Iterator[list[str]]:
    """What the store logs while listing: the records it skipped as unreadable."""
    seen: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler, logger = Catch(logging.WARNING), logging.getLogger("flowengine.store")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def _key_source(url: str) -> str | None:
    """Where the store's encryption key comes from: the URL's ``key_file``, FLOWENGINE_KEY, or nowhere."""
    query = dict(parse_qsl(urlsplit(url).query))
    if query.get("key_file"):
        return f"key_file {query['key_file']}"
    return "FLOWENGINE_KEY" if os.environ.get("FLOWENGINE_KEY") else None


async def _probe(backend: Store) -> tuple[int, int, list[str]]:
    """Read everything (tokens, flows), then write: take and give back a lease."""
    with _skipped_records() as skipped:
        tokens, flows = await backend.list_tokens(), await backend.list_flows()
    lease = await backend.acquire(f"doctor:{secrets.token_hex(8)}", 5)
    if lease is not None:
        await backend.release(lease)
    return len(tokens), len(flows), skipped


def _store(given: str | None) -> Iterator[Check]:
    try:
        url = store_url(given)
        backend = open_store(url)
    except FlowError as exc:
        yield Check(
            "store", "FAIL", f"{exc.code}: {exc.message}", "give --store or FLOWENGINE_STORE a store URL"
        )
        return
    shown, key = display_store_url(url), _key_source(url)
    path = (
        Path(url[len("sqlite://") :].partition("?")[0]).expanduser() if url.startswith("sqlite://") else None
    )
    if path is None or path.exists():
        yield from _existing_store(shown, backend, key)
        return
    yield from _future_sqlite(shown, path.absolute())
    yield Check("key", "ok", f"from {key}" if key else "none: records will be kept unencrypted")


def _future_sqlite(shown: str, path: Path) -> Iterator[Check]:
    """A SQLite file not created yet: fine if the first login can create it."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if os.access(folder, os.W_OK | os.X_OK):
        yield Check("store", "ok", f"{shown}: not created yet; the first login creates it")
    else:
        yield Check(
            "store", "FAIL", f"{shown}: cannot be created ({folder} is not writable)", "choose --store"
        )


def _existing_store(shown: str, backend: Store, key: str | None) -> Iterator[Check]:
    async def probe() -> tuple[int, int, list[str]]:
        try:
            return await _probe(backend)
        finally:
            await backend.aclose()

    try:
        tokens, flows, skipped = asyncio.run(probe())
    except FlowError as exc:
        missing = exc.code == "store_key_missing"
        fix = (
            "set FLOWENGINE_KEY, or add ?key_file=PATH to the store URL"
            if missing
            else "check that the store is running and the URL is right"
        )
        yield Check("key" if missing else "store", "FAIL", f"{shown}: {exc.code}: {exc.message}", fix)
        return
    yield Check("store", "ok", f"{shown}: readable and writable; {tokens} token(s), {flows} flow(s)")
    if skipped:
        yield Check(
            "key",
            "FAIL",
            f"{len(skipped)} record(s) cannot be read: {skipped[0]}",
            "use the key the records were sealed with (FLOWENGINE_KEY or ?key_file=)",
        )
    else:
        yield Check("key", "ok", f"from {key}" if key else "none: records are kept unencrypted")


def _specs() -> Iterator[Check]:
    for folder in os.environ.get("FLOWENGINE_SPEC_PATH", "").split(os.pathsep):
        if folder and not Path(folder).is_dir():
            yield Check(
                "spec path", "FAIL", f"{folder} (in FLOWENGINE_SPEC_PATH) is not a folder", "fix the variable"
            )
    broken = []
    for name in spec_names():
        try:
            spec_argument(name)
        except FlowError:
            broken.append(name)
    folders = ", ".join(str(f) for f in spec_folders()) or "none"
    if broken:
        fix = f"flowengine spec validate {' '.join(broken)}"
        yield Check("specs", "FAIL", f"{len(broken)} invalid: {', '.join(broken)} (in {folders})", fix)
    else:
        yield Check("specs", "ok", f"{len(spec_names())} valid, in {folders}")


def _config() -> Iterator[Check]:
    import tomllib

    path = config_path()
    if not path.exists():
        yield Check("config", "ok", f"{path}: none (credentials come from flags, variables or a prompt)")
        return
    try:
        tables = list(tomllib.loads(path.read_text(encoding="utf-8")))
        for table in tables:
            load_config(table, path, warn=False)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, FlowError) as exc:
        said = exc.message if isinstance(exc, FlowError) else f"{path}: {exc}"
        yield Check("config", "FAIL", said, "fix the file (docs/cli.md, Credentials)")
        return
    if readable_by_others(path):
        yield Check("config", "warn", f"{path}: readable by other users", f"chmod 600 {path}")
    else:
        yield Check("config", "ok", f"{path}: {len(tables)} table(s)")


def _sandbox() -> Iterator[Check]:
    try:
        url = sandbox_url()
        if url is None:
            yield Check("sandbox", "ok", "FLOWENGINE_SANDBOX_URL unset: --sandbox starts its own")
            return
        for name in spec_names():
            try:
                box = open_sandbox(spec_argument(name), url)
            except PluginError:
                continue
            with box:  # entering a sandbox at a URL checks that one answers there
                yield Check("sandbox", "ok", f"a sandbox answers at {url}")
            return
        yield Check("sandbox", "warn", f"no installed sandbox emulates any spec found, to try {url}")
    except FlowError as exc:
        yield Check(
            "sandbox", "FAIL", f"{exc.code}: {exc.message}", "start it, or unset FLOWENGINE_SANDBOX_URL"
        )


def _graphviz() -> Iterator[Check]:
    dot = shutil.which("dot")
    if dot:
        yield Check("graphviz", "ok", f"{dot}, for `spec graph --format svg|png`")
    else:
        yield Check(
            "graphviz",
            "warn",
            "`dot` not found; needed only for `spec graph --format svg|png`",
            "apt-get install graphviz (Debian), brew install graphviz (macOS)",
        )


def _dev() -> Iterator[Check]:
    """What the test suite needs beyond the extras: only with --dev."""
    if CHROMIUM.is_file():
        yield Check("chromium", "ok", f"{CHROMIUM}, for tests/web/test_browser.py")
    else:
        yield Check(
            "chromium", "FAIL", f"no {CHROMIUM} (the browser test drives it)", "apt-get install -y chromium"
        )
    for module, why in (("pytest", "the test suite"), ("playwright", "the browser test")):
        if importlib.util.find_spec(module) is None:
            yield Check(module, "FAIL", f"not installed; needed for {why}", "pip install -e '.[dev]'")
        else:
            yield Check(module, "ok", f"installed, for {why}")


def run_checks(store: str | None, dev: bool) -> list[Check]:
    """Every check, in the order a newcomer meets what they check."""
    groups = [_python(), _extras(), _store(store), _specs(), _config(), _sandbox(), _graphviz()]
    if dev:
        groups.append(_dev())
    return [check for group in groups for check in group]


@click.command()
@store_option
@click.option("--dev", is_flag=True, help="Also check what contributors need: Chromium, Playwright, pytest.")
def doctor(store: str | None, dev: bool) -> None:
    """Check this setup: Python, extras, the store and its key, specs, config, sandbox, Graphviz.

    Prints one line per check, and how to fix what is not right. Exit 0 when
    nothing FAILs (warnings are for optional things), 4 otherwise.

    \b
    Example:
      flowengine doctor --store sqlite:///var/lib/app/flowengine.db
    """
    checks = run_checks(store, dev)
    width = max(len(check.name) for check in checks)
    for check in checks:
        click.echo(printable(f"{check.status:<5} {check.name:<{width}}  {check.detail}"))
        if check.fix:
            click.echo(f"{'':<5} {'':<{width}}  fix: {check.fix}")
    failed = [check.name for check in checks if check.status == "FAIL"]
    if failed:
        click.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}.", err=True)
        sys.exit(EXIT_FAILED)
    warned = sum(check.status == "warn" for check in checks)
    click.echo("All is well" + (f" ({warned} warning(s) about optional things)." if warned else "."))
    sys.exit(EXIT_OK)
