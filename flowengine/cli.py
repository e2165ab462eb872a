"""The ``flowengine`` command, and what plugins adding commands to it share.

The core adds ``spec``; plugins add the rest through the ``flowengine_commands``
hook. Everything a plugin's commands need in common is public here, so that
they print the same errors and read the same options: the exit statuses, the
``--store`` option and the default store URL, ``run_command`` and ``fail``
(``Error: CODE: MESSAGE`` on stderr), durations, the running sandbox's URL,
client credentials (``resolve_client``) and spec arguments (``spec_argument``).

Exit codes (DESIGN.md): 0 exchanged/ok, 2 bad usage or invalid spec,
3 denied, 4 failed, 5 timed out waiting for the person, 128+N stopped by signal N.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any

import attrs
import click

from flowengine import _plugins
from flowengine._bounded import carried
from flowengine._cli_common import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    SANDBOX_URL_ENV,
    STORE_ENV,
    Interrupted,
    default_store_url,
    exit_status,
    fail,
    format_duration,
    opened_store,
    parse_duration,
    print_error,
    printable,
    run_command,
    sandbox_url,
    store_option,
    store_url,
)
from flowengine._cli_connection import connection_option, parse_connection, resolve_connection
from flowengine._cli_flows import settled_flow
from flowengine._cli_graph import GRAPH_FORMATS, graph_format, render_image
from flowengine._cli_output import (
    Commands,
    check_writable,
    stop_if_stdout_failed,
    unwritable,
    watch_stdout,
    write_output,
)
from flowengine._credentials import (
    ClientSettings,
    config_path,
    env_prefix,
    load_config,
    readable_by_others,
    resolve_client,
)
from flowengine._errors import ConfigError, FlowError, PluginError, SpecError
from flowengine._graph import render_graph
from flowengine._machine import compile_flow
from flowengine._records import Token
from flowengine._spec import FlowSpec
from flowengine._spec_load import load_spec
from flowengine._spec_sources import find_named, named_specs

__all__ = [
    "EXIT_DENIED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "GRAPH_FORMATS",
    "SANDBOX_URL_ENV",
    "STORE_ENV",
    "ClientSettings",
    "Interrupted",
    "carried",
    "check_writable",
    "cli",
    "complete_spec",
    "config_path",
    "connection_option",
    "default_store_url",
    "describe_spec",
    "env_prefix",
    "exit_status",
    "fail",
    "format_duration",
    "load_config",
    "main",
    "opened_store",
    "parse_connection",
    "parse_duration",
    "print_error",
    "printable",
    "readable_by_others",
    "resolve_client",
    "resolve_connection",
    "run_command",
    "sandbox_url",
    "settled_flow",
    "spec_argument",
    "spec_folders",
    "spec_for_token",
    "spec_names",
    "store_option",
    "store_url",
    "unwritable",
    "write_output",
]


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="flowengine")
def cli() -> None:
    """flowengine: OAuth flows described in YAML, driven from the command line.

    \b
    Try it with no credentials against the built-in Podio sandbox:
      flowengine login podio --sandbox --approve
    """


@cli.group()
def spec() -> None:
    """Validate, list and draw flow specs."""


def complete_spec(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for a SPEC argument: the named specs, and files (``my-provider.yaml``)."""
    from click.shell_completion import CompletionItem

    names = [CompletionItem(name) for name, _path in _spec_entries() if name.startswith(incomplete)]
    return [*names, CompletionItem(incomplete, type="file")]


def spec_argument(ref: str, *, names: tuple[set[str], set[str]] | None = None) -> FlowSpec:
    """The spec a command-line argument names: a path if the file exists, else a name.

    An unknown name (``Podio``, ``podio.yaml`` or ``my/spec.yaml`` that is not a file too)
    is ``spec_not_found`` with the closest names (``did you mean 'podio'?``) and a pointer
    to ``flowengine spec list``. ``names`` (guards, actions) adds the name checks of ``spec validate``.
    """
    try:
        is_file = Path(ref).is_file()
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise ConfigError(f"cannot read {ref!r} as a spec file: {exc.strerror or exc}") from None
    if is_file:
        return load_spec(Path(ref), names=names)
    try:
        return load_spec(find_named(ref, spec_folders()), names=names)
    except PluginError as exc:
        if exc.code != "spec_not_found":
            raise
        close = _close_names(ref, spec_names())
        path_like = ref.endswith((".yaml", ".yml")) or "/" in ref
        said = f"there is no file {ref}, nor a spec of that name" if path_like else exc.message
        guess = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
        raise PluginError(
            f"{said}{guess} (`flowengine spec list` lists every named spec; a SPEC may also be "
            "the path of a YAML file)",
            code="spec_not_found",
        ) from None


def _close_names(ref: str, known: list[str]) -> list[str]:
    """The known names closest to ``ref``, case and a ``.yaml`` suffix or folder aside."""
    wanted = Path(ref).name.lower().removesuffix(".yaml").removesuffix(".yml")
    same = [name for name in known if name.lower() == wanted]
    return same or difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)


def spec_for_token(token: Token, spec_ref: str | None = None) -> FlowSpec:
    """The spec to refresh or revoke ``token`` with: ``spec_ref`` (``--spec``) when given, else the
    file its spec came from (``token.spec_source``) when it is still there, else the spec
    named ``token.provider``.

    A spec whose ``name:`` is not the token's provider cannot be the token's
    (``ConfigError``): it would file the refreshed token under another name.
    """
    if spec_ref is not None:
        spec = spec_argument(spec_ref)
    elif token.spec_source is not None and Path(token.spec_source).is_file():
        spec = load_spec(Path(token.spec_source))
    else:
        spec = spec_argument(token.provider)
    if spec.name != token.provider:
        raise ConfigError(
            f"the spec {spec.source} is named {spec.name!r}, "
            f"but the token {token.key} is of {token.provider!r}"
        )
    return spec


def spec_names() -> list[str]:
    """The names ``load_spec(NAME)`` finds, in search order."""
    return [name for name, _path in _spec_entries()]


def spec_folders() -> list[Path]:
    """The folders named specs are found in, in search order (the ``flowengine_spec_paths`` hook)."""
    return _plugins.spec_paths()


@spec.command("validate")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...", shell_complete=complete_spec)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list: spec, ok, problems.")
def spec_validate(specs: tuple[str, ...], as_json: bool) -> None:
    """Check specs (files or names); list every problem, exit 2 if any.

    \b
    Example:
      flowengine spec validate specs/podio.yaml my-provider.yaml
    """
    guards, actions = _plugins.guards_and_actions()
    names = (set(guards), set(actions))
    report: list[dict[str, Any]] = []
    for ref in specs:
        try:
            spec_argument(ref, names=names)
        except SpecError as exc:
            problems = [str(problem) for problem in exc.problems]
        except FlowError as exc:
            problems = [f"{ref}: {exc}"]
        else:
            problems = []
        report.append({"spec": ref, "ok": not problems, "problems": problems})
        if not as_json:
            for problem in problems:
                click.echo(printable(problem), err=True)
            if not problems:
                click.echo(f"{ref}: ok")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if any(problems for problems in (entry["problems"] for entry in report)):
        sys.exit(EXIT_USAGE)


@spec.command("from-issuer")
@click.argument("issuer", metavar="ISSUER_URL")
@click.option("--name", help="The spec's name (default: from the issuer's host).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write it here, not to stdout."
)
def spec_from_issuer(issuer: str, name: str | None, output: Path | None) -> None:
    """Write a starting spec from an OpenID provider's discovery document.

    Fetches ISSUER_URL/.well-known/openid-configuration (its issuer must be
    ISSUER_URL exactly; https, http only on loopback) and writes its endpoints,
    PKCE, client authentication, ID token algorithms, userinfo, revocation and
    device grant as a spec, which validates. Exit 4 when the document cannot be
    fetched or is refused (discovery_* codes).

    \b
    Example:
      flowengine spec from-issuer https://accounts.google.com --name my-google -o my-google.yaml
    """
    from flowengine._spec_from_issuer import spec_from_issuer as write

    try:
        if output is not None:
            check_writable(output)  # before the issuer is asked
    except FlowError as exc:
        fail(exc)
    text = run_command(lambda: write(issuer, name=name))
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_output(output, text.encode())
    except FlowError as exc:
        fail(exc)
    click.echo(f"{output}: written ({len(text.splitlines())} lines); `flowengine spec validate {output}`")


@spec.command("graph")
@click.argument("spec_ref", metavar="SPEC", shell_complete=complete_spec)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(GRAPH_FORMATS),
    default=None,
    help="mermaid or dot text; svg or png through Graphviz. Default: from --output's suffix, else mermaid.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file, not stdout."
)
def spec_graph(spec_ref: str, fmt: str | None, output: Path | None) -> None:
    """Draw the compiled state machine, guards on the edges: Mermaid, DOT, SVG or PNG.

    SVG and PNG need Graphviz's `dot` program; binary output is not written to
    a terminal (use --output or a pipe).

    \b
    Examples:
      flowengine spec graph podio
      flowengine spec graph podio -o podio.svg
      flowengine spec graph podio --format dot | dot -Tpdf > podio.pdf
    """
    fmt = graph_format(fmt, output)
    if fmt in ("svg", "png") and output is None and sys.stdout.isatty():
        raise click.UsageError(f"--format {fmt} is binary: pass --output FILE or redirect stdout")
    try:
        if output is not None:
            check_writable(output)
        loaded = spec_argument(spec_ref)
        if loaded.machine is None:
            raise ConfigError(
                f"spec {loaded.name!r} is grant-only: it has no machine to draw "
                f"(`flowengine spec show {loaded.name}` says what it has)",
                code="grant_only_spec",
            )
        guards, actions = _plugins.guards_and_actions()
        compile_flow(loaded, guards=guards, actions=actions)  # unknown guard or action names: spec_invalid
        text = render_graph(loaded, "mermaid" if fmt == "mermaid" else "dot")
    except FlowError as exc:
        fail(exc)
    data = text.encode() if fmt in ("mermaid", "dot") else render_image(text, fmt)
    if output is not None:
        try:
            write_output(output, data)
        except FlowError as exc:
            fail(exc)
        click.echo(f"wrote {output} ({fmt}, {len(data)} bytes)", err=True)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _spec_entries() -> list[tuple[str, Path]]:
    """Every named spec that ``load_spec(NAME)`` finds, and the file that wins for it."""
    return named_specs(_plugins.spec_paths())


@spec.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: name, path, kind, description, problems.")
def spec_list(as_json: bool) -> None:
    """List the named specs that flowengine finds by name, and where.

    Prints NAME<TAB>PATH lines in search order (FLOWENGINE_SPEC_PATH first). With
    --json each spec is also loaded, to say its kind, description and problems.

    \b
    Example:
      flowengine spec list --json
    """
    entries = _spec_entries()
    if not as_json:
        for name, path in entries:
            click.echo(f"{name}\t{path}")
        return
    documents = []
    for name, path in entries:
        entry: dict[str, Any] = {"name": name, "path": str(path)}
        try:
            loaded = load_spec(path)
        except SpecError as exc:
            entry.update(kind=None, description=None, problems=[str(p) for p in exc.problems])
        else:
            entry.update(kind=_kind(loaded), description=loaded.description, problems=[])
        documents.append(entry)
    click.echo(json.dumps(documents, indent=2))


def _kind(loaded: FlowSpec) -> str:
    return "flow" if loaded.machine is not None else "grant-only"


@spec.command("show")
@click.argument("spec_ref", metavar="SPEC", shell_complete=complete_spec)
@click.option("--json", "as_json", is_flag=True, help="Print the whole loaded spec as JSON.")
def spec_show(spec_ref: str, as_json: bool) -> None:
    """Show what a spec says: endpoints, requests, grants, token use and the machine.

    \b
    Example:
      flowengine spec show podio
    """
    try:
        loaded = spec_argument(spec_ref)
    except FlowError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(attrs.asdict(loaded), indent=2, default=list))
        return
    for line in describe_spec(loaded):
        click.echo(line)


def describe_spec(loaded: FlowSpec) -> list[str]:
    """The spec in lines a person reads at a glance (``spec show``)."""
    lines = [f"{loaded.name} ({_kind(loaded)}): {loaded.description or '-'}", f"source: {loaded.source}"]
    lines.append("endpoints:")
    width = max(map(len, loaded.endpoints), default=0)
    lines += [f"  {name:<{width}}  {url}" for name, url in loaded.endpoints.items()]
    if loaded.authorization is not None:
        params = ", ".join(loaded.authorization.params)
        lines.append(f"authorization: {loaded.authorization.endpoint} with {params}")
    lines.append(f"pkce: {'S256' if loaded.pkce else 'no'}")
    lines.append(f"registered domain: {loaded.redirect.registered_domain or '-'}")
    if loaded.inputs:
        lines.append(f"inputs: {', '.join(loaded.inputs)}")
    lines.append("grants:")
    for name, grant in loaded.grants.items():
        lines.append(f"  {name}: {grant.endpoint}, {grant.encoding}, client auth in {grant.client_auth}")
    lines.append(f"token use: Authorization: {loaded.usage.header_scheme} <access token>")
    lines += _describe_openid(loaded)
    machine = loaded.machine
    if machine is not None:
        states = [
            s + (" (initial)" if s == machine.initial else " (final)" if s in machine.final else "")
            for s in machine.states
        ]
        lines.append(f"states: {', '.join(states)}; pending flows expire after {machine.ttl}s")
        lines.append("transitions:")
        for t in machine.transitions:
            guard = f" when {' and '.join(t.when)}" if t.when else ""
            action = f" do {', '.join(t.do)}" if t.do else ""
            lines.append(f"  {t.trigger}: {', '.join(t.source)} -> {t.dest}{guard}{action}")
    return lines


def _describe_openid(loaded: FlowSpec) -> list[str]:
    """``spec show``'s lines for the issuer, discovery, OpenID Connect and the device grant."""
    lines = [f"issuer: {loaded.issuer}"] if loaded.issuer else []
    if loaded.discovery is not None:
        lines.append(f"discovery: {loaded.discovery} (endpoints not written come from the issuer's metadata)")
    if loaded.openid is not None:
        rules = loaded.openid
        extra = f"; userinfo at {rules.userinfo}" if rules.userinfo else ""
        lines.append(f"openid: ID token checked with the keys at {rules.jwks}; account: sub in iss{extra}")
    if loaded.device is not None:
        device = loaded.device
        lines.append(f"device: {device.endpoint}, polls with the {device.grant} grant (login --device)")
    return lines


def main() -> None:
    """Run the ``flowengine`` command: plugins add their commands first.

    The console script is ``flowengine_entry:main``, which calls this once it
    has taken charge of Ctrl-C and SIGTERM (they may come while this imports).
    What is left in stdout's buffer is flushed here, where a failure is one line.
    """
    _plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    watch_stdout()
    try:
        cli(prog_name="flowengine")
    except OSError as exc:  # click's own output (--help, a usage error) to a stdout that fails
        stop_if_stdout_failed(exc)
        raise
    except SystemExit:
        stop_if_stdout_failed()
        raise
