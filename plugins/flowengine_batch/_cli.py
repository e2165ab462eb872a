"""``flowengine batch refresh|exchange|grant``: the batch frontend on the command line.

Every command shares one set of options (store, sandbox, concurrency, rate
limits, retries, report, state file, progress), runs one ``BatchRun`` and
maps its end to an exit status: 0 every item fine, 4 some item needs
attention (failed, dead, denied), 2 bad usage, 128+N when signal N stopped
the run (its state file is kept; rerun the same command to finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from flowengine import AsyncEngine, Client, ConfigError, FlowError, FlowSpec, RetryPolicy, Token, open_sandbox
from flowengine.cli import (
    EXIT_FAILED,
    EXIT_OK,
    check_writable,
    fail,
    opened_store,
    parse_duration,
    printable,
    resolve_client,
    run_command,
    sandbox_url,
    spec_argument,
    spec_for_token,
    store_option,
    store_url,
    unwritable,
)

from ._collector import tune_collector
from ._journal import Journal, JournalBusy, default_state_dir
from ._limits import RateLimit
from ._progress import PROGRESS_MODES, Progress, ProgressMode
from ._results import Report
from ._runner import Batch, BatchRun

__all__ = ["batch"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _options(command: _F) -> _F:
    """The options every batch command takes."""
    decorators = [
        click.option(
            "--sandbox",
            is_flag=True,
            help="Run against the local Podio emulator at FLOWENGINE_SANDBOX_URL "
            "(grant may start one of its own).",
        ),
        click.option(
            "--concurrency",
            default=32,
            show_default=True,
            type=click.IntRange(1, 1024),
            help="Items at once.",
        ),
        click.option(
            "--rate-limit",
            default="1000/1h",
            show_default=True,
            metavar="RATE",
            help="Calls per account and API key, e.g. 1000/1h, 250/h, 50/2s; 'none' for no local count.",
        ),
        click.option(
            "--client-rate-limit",
            default="none",
            show_default=True,
            metavar="RATE",
            help="Calls per API key over all accounts (Podio publishes none; set your own cap).",
        ),
        click.option(
            "--retries",
            default=4,
            show_default=True,
            type=click.IntRange(1, 20),
            help="Attempts per request where a retry is safe (refresh, grant; an exchange only if unsent).",
        ),
        click.option(
            "--report", "report_path", metavar="FILE", help="Write the JSON report here ('-': stdout)."
        ),
        click.option(
            "--state",
            "state_path",
            metavar="FILE",
            help="State file that makes the run resumable (default: one per job in "
            "$XDG_DATA_HOME/flowengine/batch).",
        ),
        click.option("--fresh", is_flag=True, help="Discard a leftover state file instead of resuming it."),
        click.option(
            "--progress",
            type=click.Choice(PROGRESS_MODES),
            help="How to show the run: a bar, one line per item, or nothing (default: bar on a terminal).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (for cron)."),
        store_option,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _rate_limit(text: str, option: str) -> RateLimit | None:
    """``--rate-limit``'s value read, or a usage error that names the option."""
    try:
        return RateLimit.parse(text)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint=repr(option)) from None


class _Settings:
    """The shared options, checked once."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.account_limit = _rate_limit(options["rate_limit"], "--rate-limit")
        self.client_limit = _rate_limit(options["client_rate_limit"], "--client-rate-limit")
        self.sandbox: bool = options["sandbox"]
        self.concurrency: int = options["concurrency"]
        self.retry = RetryPolicy(attempts=options["retries"])
        self.report_path: str | None = options["report_path"]
        self.state_path: str | None = options["state_path"]
        self.fresh: bool = options["fresh"]
        self.quiet: bool = options["quiet"]
        chosen: ProgressMode | None = options["progress"]
        self.progress: ProgressMode = (
            "none" if self.quiet else chosen or ("bar" if sys.stderr.isatty() else "none")
        )
        try:
            self.store: str = store_url(options["store"])
            # Checked before anything is refreshed: a report that cannot be written would be lost.
            for target in (self.report_path, self.state_path):
                if target is not None and target != "-":
                    check_writable(Path(target))
        except FlowError as exc:
            fail(exc)

    def batch(self) -> Batch:
        return Batch(
            concurrency=self.concurrency,
            account_limit=self.account_limit,
            client_limit=self.client_limit,
            retry=self.retry,
        )

    def journal(self, job: str, key: str) -> Journal:
        """The state file for this job: ``--state``, or one per job, store and input."""
        digest = hashlib.sha256(json.dumps([job, self.store, key]).encode()).hexdigest()[:16]
        path = Path(self.state_path) if self.state_path else default_state_dir() / f"{job}-{digest}.jsonl"
        if self.fresh:
            Journal(path).discard()
        return Journal(path)


def _sandbox_url(settings: _Settings, job: str) -> str | None:
    """The running sandbox (needed by refresh and exchange: they work on what it issued)."""
    if not settings.sandbox:
        return None
    try:
        return sandbox_url(needed_for=None if job == "grant" else f"batch {job} --sandbox")
    except FlowError as exc:
        fail(exc)


def _file_key(path: Path) -> str:
    """The input's identity for the state file: where it is, its size and time (never its content)."""
    stat = path.stat()
    return json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns])


async def _drive(
    settings: _Settings,
    job: str,
    make_run: Callable[[Batch, contextlib.AsyncExitStack], Awaitable[BatchRun]],
) -> int:
    """Run one job to its end (or its stop), showing progress and honouring Ctrl-C and SIGTERM."""
    batch = settings.batch()
    signals: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        run = await make_run(batch, stack)
        with Progress(settings.progress, job) as progress:

            def on_signal(signum: int) -> None:
                signals.append(signum)
                if len(signals) == 1:
                    progress.note(
                        "Stopping: requests on the wire finish, nothing new is sent "
                        "(again to abandon them); rerun the same command to go on."
                    )
                    run.stop()
                else:
                    progress.note("Abandoning the requests in flight.")
                    run.stop(now=True)

            loop = asyncio.get_running_loop()
            previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
            for signum in previous:
                loop.add_signal_handler(signum, on_signal, signum)
            try:
                async with run:
                    resumed = False
                    async for result in run:
                        if not resumed and result.resumed:
                            resumed = True
                            progress.note(
                                f"Resuming: outcomes of an earlier run are kept ({_state_name(run)})."
                            )
                        progress.start(run.report.total)
                        progress.advance(result, run.report.rate)
            finally:
                for signum, handler in previous.items():
                    loop.remove_signal_handler(signum)
                    signal.signal(signum, handler)  # asyncio leaves the default: the script's own again
    _finish(settings, run.report, run)
    if signals and not run.report.complete:
        return 128 + signals[0]
    return EXIT_OK if run.report.ok else EXIT_FAILED


def _state_name(run: BatchRun) -> str:
    return str(run.journal.path) if run.journal is not None else "no state file"


def _finish(settings: _Settings, report: Report, run: BatchRun) -> None:
    if settings.report_path:
        _write_report(settings.report_path, report.to_json())
    if settings.quiet and report.ok:
        return  # cron mails what a job prints: nothing on a good night
    if settings.quiet:  # the progress lines were not shown: name what needs attention
        for result in report.results.values():
            if not result.ok:
                click.echo(printable(result.line()), err=True)
    click.echo(report.summary_line(), err=True)
    if report.errors:
        click.echo("  errors: " + ", ".join(f"{code} {n}" for code, n in report.errors.items()), err=True)
    if not report.complete and run.journal is not None:
        click.echo(f"  state kept in {run.journal.path}: rerun the same command to finish", err=True)


def _write_report(target: str, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=2) + "\n"
    if target == "-":
        click.echo(text, nl=False)
        return
    path = Path(target)
    # Written whole or not at all: a reader never sees half a report.
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError as exc:
        fail(unwritable(path, exc.strerror or str(exc)))


def _open_journal(settings: _Settings, job: str, key: str) -> Journal | None:
    """The job's state file, opened and locked; None (with a warning) when another run holds it."""
    journal = settings.journal(job, key)
    try:
        journal.lock()
    except OSError as exc:  # its folder cannot be made, or the file cannot be opened for writing
        fail(unwritable(journal.path, exc.strerror or str(exc)))
    except JournalBusy:
        if settings.state_path is not None:
            raise
        click.echo("Another run of the same job holds its state file: this run is not resumable.", err=True)
        return None
    return journal


def _client_for(spec: FlowSpec, sandbox: Any | None) -> tuple[Client, dict[str, str]]:
    if sandbox is not None:
        return sandbox.client, dict(sandbox.endpoints)
    return resolve_client(spec.name, prompt=False).client, {}


async def _engines(
    settings: _Settings,
    batch: Batch,
    stack: contextlib.AsyncExitStack,
    specs: Sequence[FlowSpec],
    sandbox_url: str | None,
) -> list[AsyncEngine]:
    engines = []
    for spec in specs:
        box = stack.enter_context(open_sandbox(spec, sandbox_url)) if settings.sandbox else None
        client, endpoints = _client_for(spec, box)
        engine = batch.engine(spec, client=client, store=settings.store, endpoints=endpoints)
        engines.append(await stack.enter_async_context(engine))
    return engines


@click.group()
def batch() -> None:
    """Refresh, exchange or grant many at once, within the provider's rate limits.

    \b
    Every command is resumable: Ctrl-C (or SIGTERM) lets the requests on the
    wire finish and keeps a state file; the same command again goes on.
    Exit codes: 0 all fine, 2 usage, 4 some item failed or is dead, 128+N stopped by signal N.
    """
    tune_collector()  # this process runs one batch: the collector at the batch's pace (_collector.py)


@batch.command("refresh")
@click.option("--expiring-within", metavar="DURATION", help="Only tokens expiring within, e.g. 1h.")
@click.option("--all", "refresh_all", is_flag=True, help="Every stored token.")
@click.option(
    "--provider", "providers", multiple=True, metavar="SPEC", help="Only this provider's tokens (repeatable)."
)
@click.option(
    "--via",
    metavar="QUEUE",
    help="Queue the refreshes for workers instead of running them here (celery: the Celery fleet).",
)
@_options
def batch_refresh(
    expiring_within: str | None,
    refresh_all: bool,
    providers: tuple[str, ...],
    via: str | None,
    **options: Any,
) -> None:
    """Refresh every matching stored token, each once, even across overlapping runs.

    A token whose grant is refused (invalid_grant, with the stored refresh
    token unchanged) is marked dead and reported, not retried.

    \b
    Example (cron, hourly):
      flowengine batch refresh --expiring-within 2h --quiet --report /var/log/flowengine/refresh.json
    """
    if bool(expiring_within) == refresh_all:
        raise click.UsageError("choose one of --expiring-within DURATION and --all")
    within = parse_duration(expiring_within) if expiring_within else None
    settings = _Settings(options)
    if via is not None:
        if settings.report_path or settings.state_path:
            raise click.UsageError(
                "--via queues the refreshes: the workers report them, not --report or --state"
            )
        from ._queued import enqueue

        limits = (settings.account_limit, settings.client_limit)
        sys.exit(
            run_command(lambda: enqueue(via, settings.store, providers, within, limits, quiet=settings.quiet))
        )
    sandbox_url = _sandbox_url(settings, "refresh")

    async def work() -> int:
        async def make_run(batch: Batch, stack: contextlib.AsyncExitStack) -> BatchRun:
            stored = await _providers_in_store(settings.store)
            names = list(dict.fromkeys(providers)) or sorted(stored)
            # A provider's spec: the file its tokens came from, when there is one, else its name.
            specs = [
                spec_for_token(stored[name]) if name in stored else spec_argument(name) for name in names
            ]
            engines = await _engines(settings, batch, stack, specs, sandbox_url)
            key = json.dumps(["refresh", sorted(names), within])
            return batch.refresh(
                engines, expiring_within=within, journal=_open_journal(settings, "refresh", key)
            )

        return await _drive(settings, "refresh", make_run)

    sys.exit(run_command(work))


async def _providers_in_store(url: str) -> dict[str, Token]:
    """One stored token per provider (to find its spec by), by provider name."""
    async with opened_store(url, reading=True) as store:
        return {token.provider: token for token in await store.list_tokens()}


@batch.command("exchange")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--spec", "spec_ref", default="podio", show_default=True, help="The spec the flows belong to.")
@_options
def batch_exchange(file: Path, spec_ref: str, **options: Any) -> None:
    """Finish flows from recorded callback URLs, one JSON object per line.

    Each line is {"url": CALLBACK_URL} (add "session" when the flow was started
    with one) or {"flow_id": ID} for a flow already authorized. A code is sent
    at most once: an exchange is retried only when nothing reached the server.

    \b
    Example:
      flowengine batch exchange callbacks.jsonl --report exchanged.json
    """
    settings = _Settings(options)
    sandbox_url = _sandbox_url(settings, "exchange")

    async def work() -> int:
        async def make_run(batch: Batch, stack: contextlib.AsyncExitStack) -> BatchRun:
            from ._inputs import read_exchange_file

            items = read_exchange_file(file)
            [engine] = await _engines(settings, batch, stack, [spec_argument(spec_ref)], sandbox_url)
            key = json.dumps(["exchange", spec_ref, _file_key(file)])
            return batch.exchange(engine, items, journal=_open_journal(settings, "exchange", key), key=key)

        return await _drive(settings, "exchange", make_run)

    sys.exit(run_command(work))


def _default_grant(spec: FlowSpec) -> str:
    choices = [name for name in spec.grants if name not in ("authorization_code", "refresh_token")]
    if not choices:
        raise ConfigError(
            f"spec {spec.name!r} has no non-interactive grant to run for each row: a person logs in "
            f"through its authorization flow, with `flowengine login {spec.name}`",
            code="grant_unsupported",
        )
    if len(choices) > 1:
        raise ConfigError(
            f"spec {spec.name!r} has several non-interactive grants ({', '.join(choices)}): "
            "choose one with --grant NAME",
            code="grant_unsupported",
        )
    return choices[0]


@batch.command("grant")
@click.argument("spec_ref", metavar="SPEC")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--grant", "grant_name", help="The grant to run (default: the spec's only non-interactive one)."
)
@_options
def batch_grant(spec_ref: str, file: Path, grant_name: str | None, **options: Any) -> None:
    """Run a non-interactive grant for every row of credentials in a CSV file.

    The header names the spec's inputs: app_id,app_token for podio-app,
    username,password for podio-password. Each token is stored under the
    account the provider names (podio-app:app:2002).

    \b
    Example:
      flowengine batch grant podio-app apps.csv --concurrency 16 --report granted.json
    """
    settings = _Settings(options)
    sandbox_url = _sandbox_url(settings, "grant")

    async def work() -> int:
        async def make_run(batch: Batch, stack: contextlib.AsyncExitStack) -> BatchRun:
            spec = spec_argument(spec_ref)
            grant = grant_name or _default_grant(spec)
            from ._inputs import read_grant_file

            items = read_grant_file(file, spec)
            [engine] = await _engines(settings, batch, stack, [spec], sandbox_url)
            key = json.dumps(["grant", spec.name, grant, _file_key(file)])
            return batch.grant(engine, grant, items, journal=_open_journal(settings, "grant", key), key=key)

        return await _drive(settings, "grant", make_run)

    sys.exit(run_command(work))
