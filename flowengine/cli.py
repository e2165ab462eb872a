"""The ``flowengine`` command. The core adds ``spec``; plugins add the rest.

Exit codes (DESIGN.md): 0 exchanged/ok, 2 bad usage or invalid spec,
3 denied, 4 failed, 5 timed out waiting for the person.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowengine import plugins
from flowengine.compiler import BUILTIN_ACTIONS, BUILTIN_GUARDS, compile_flow, render_graph
from flowengine.errors import FlowError, SpecError
from flowengine.spec import FlowSpec, load_spec

__all__ = [
    "EXIT_DENIED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "cli",
    "main",
    "spec_argument",
]

EXIT_OK, EXIT_USAGE, EXIT_DENIED, EXIT_FAILED, EXIT_TIMEOUT = 0, 2, 3, 4, 5


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def spec_argument(ref: str) -> FlowSpec:
    """The spec a command-line argument names: a path if the file exists, else a name."""
    return load_spec(Path(ref) if Path(ref).is_file() else ref)


@spec.command("validate")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
def spec_validate(specs: tuple[str, ...]) -> None:
    """Check specs (files or names); list every problem, exit 2 if any.

    \b
    Example:
      flowengine spec validate specs/podio.yaml my-provider.yaml
    """
    failed = False
    names = (
        {*BUILTIN_GUARDS, *plugins.plugin_guards()},
        {*BUILTIN_ACTIONS, *plugins.plugin_actions()},
    )
    for ref in specs:
        try:
            load_spec(Path(ref) if Path(ref).is_file() else ref, names=names)
        except SpecError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(str(problem), err=True)
        except FlowError as exc:
            failed = True
            click.echo(f"{ref}: {exc}", err=True)
        else:
            click.echo(f"{ref}: ok")
    if failed:
        sys.exit(EXIT_USAGE)


@spec.command("graph")
@click.argument("spec_ref", metavar="SPEC")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def spec_graph(spec_ref: str, fmt: str) -> None:
    """Print the compiled state machine as Mermaid or Graphviz DOT text.

    \b
    Example:
      flowengine spec graph podio --format dot | dot -Tsvg > podio.svg
    """
    try:
        text = render_graph(compile_flow(spec_argument(spec_ref)), fmt)
    except SpecError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_USAGE)
    except (FlowError, ValueError) as exc:  # ValueError: a grant-only spec has no machine
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    click.echo(text, nl=False)


@spec.command("list")
def spec_list() -> None:
    """List the named specs that ``load_spec(NAME)`` finds, and where."""
    seen: set[str] = set()
    for folder in plugins.spec_paths():
        for path in sorted(folder.glob("*.yaml")):
            if path.stem not in seen:
                seen.add(path.stem)
                click.echo(f"{path.stem}\t{path}")


def main() -> None:
    """Entry point of the ``flowengine`` script: plugins add their commands first."""
    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    cli(prog_name="flowengine")
