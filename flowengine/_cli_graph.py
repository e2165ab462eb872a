"""``flowengine spec graph``'s formats: the one a command line asks for, and Graphviz's images."""

from __future__ import annotations

from pathlib import Path

import click

from flowengine._cli_common import fail
from flowengine._errors import ConfigError, FlowError

__all__ = ["GRAPH_FORMATS", "graph_format", "render_image"]

GRAPH_FORMATS = ("mermaid", "dot", "svg", "png")


_GRAPH_SUFFIXES = {".mmd": "mermaid", ".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}


def graph_format(fmt: str | None, output: Path | None) -> str:
    """The graph's format: ``--format``, else the output file's suffix, else Mermaid.

    A suffix that names no format (``x.pdf``) is a usage error rather than Mermaid
    text in a file whose name says otherwise; a name with no suffix gets Mermaid.
    """
    if fmt is not None:
        return fmt
    suffix = output.suffix.lower() if output is not None else ""
    if suffix and suffix not in _GRAPH_SUFFIXES:
        raise click.BadParameter(
            f"{suffix} names no format this command writes ({', '.join(_GRAPH_SUFFIXES)}): "
            "choose one with --format (pdf: --format dot | dot -Tpdf)",
            param_hint="--output",
        )
    return _GRAPH_SUFFIXES.get(suffix, "mermaid")


def render_image(dot_text: str, fmt: str) -> bytes:
    """Graphviz's ``dot`` turns the DOT text into an image; a missing ``dot`` is a usage error."""
    import shutil
    import subprocess

    dot = shutil.which("dot")
    if dot is None:
        fail(
            ConfigError(
                f"--format {fmt} needs Graphviz's `dot` program (Debian: apt-get install graphviz); "
                "--format dot writes the text it would draw",
                code="graphviz_missing",
            )
        )
    done = subprocess.run(  # noqa: S603 - a fixed program on our own DOT text
        [dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace")[:500].strip()
        fail(FlowError(f"Graphviz's dot failed: {said}", code="graphviz_failed"))
    return done.stdout
