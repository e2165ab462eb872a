"""Where spec documents come from: YAML text, files, names on the search path, and ``extends``.

``_spec_load`` structures and judges a document; this module finds and reads it.

- YAML: read within bounds (``_yaml``: size, depth, aliases expanded, numbers); a
  key written twice in one mapping is refused, merge keys (``<<: *defaults``) are
  honoured and an explicit key overrides what they bring.
- Names: ``load_spec("acme")`` searches the folders in order; in each, the file
  ``acme.yaml`` (or ``.yml``) whose ``name:`` is ``acme``, else any other file of
  the folder whose ``name:`` is ``acme``. A file's ``name:`` is what it is found by.
- ``extends: NAME_OR_PATH``: the document is laid over its base (see ``merge``);
  bases may extend in turn, up to ``MAX_EXTENDS`` deep, and never in a cycle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flowengine import _yaml
from flowengine._errors import PluginError, SpecError, SpecProblem

__all__ = [
    "MAX_EXTENDS",
    "extends_label",
    "find_named",
    "merge",
    "named_specs",
    "parse_yaml",
    "read_document",
    "resolve_extends",
]

#: How many specs deep ``extends`` may go (a spec, its base, the base's base...).
MAX_EXTENDS = 8
_SUFFIXES = (".yaml", ".yml")


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text``, read within bounds (``_yaml``); ``SpecError`` naming where not."""
    try:
        return _yaml.load(text)
    except _yaml.YamlRefused as exc:
        raise SpecError([SpecProblem(exc.where, exc.message, source)]) from None


def read_document(path: Path) -> Any:
    """The YAML document in the file at ``path``; ``SpecError`` when it cannot be read.

    A file just read to learn its ``name:`` (``find_named``) is not read twice: its
    document is handed over, once, while the file's size and mtime are unchanged.
    """
    if _read_ahead:
        try:
            stat = path.stat()
        except (OSError, ValueError):
            stat = None
        if stat is not None:
            ahead = _read_ahead.pop((str(path), stat.st_mtime_ns, stat.st_size), None)
            if ahead is not None:
                return ahead
    try:
        with path.open("rb") as file:  # no more than the limit, whatever the file grew to
            text = file.read(_yaml.MAX_SPEC_BYTES + 1).decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([SpecProblem("$", "not UTF-8 text", str(path))]) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = getattr(exc, "strerror", None) or str(exc)
        raise SpecError([SpecProblem("$", f"cannot read: {why}", str(path))]) from None
    return parse_yaml(text, str(path))


# --- names on the search path ---------------------------------------------------------

#: The ``name:`` of each file read for a lookup, by (path, mtime, size).
_names: dict[tuple[str, int, int], str | None] = {}
#: The document of the last file read for its name, for the ``read_document`` that follows.
_read_ahead: dict[tuple[str, int, int], Any] = {}


def _name_in(path: Path) -> str | None:
    """The ``name:`` a spec file declares (None when it has none, or cannot be read)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _names:
        try:
            data = read_document(path)
        except SpecError:
            data = None
        name = data.get("name") if isinstance(data, dict) else None
        _names[key] = name if isinstance(name, str) else None
        _read_ahead.clear()
        if data is not None:
            _read_ahead[key] = data
    return _names[key]


#: The spec files of each folder, by folder, with the folder's mtime when listed: a file
#: added, removed or renamed changes the folder's mtime, and the folder is listed again.
#: A folder changed in the last few seconds is not kept: file times are coarser than
#: nanoseconds, so a file added within the same tick would not change the mtime (git's
#: "racy" timestamps).
_RACY_NS = 3_000_000_000
_listings: dict[str, tuple[int, list[tuple[Path, str]]]] = {}


def _spec_entries(folder: Path) -> list[tuple[Path, str]]:
    """The spec files of ``folder``, sorted, each with its stem."""
    try:
        mtime = folder.stat().st_mtime_ns
        listed = _listings.get(str(folder))
        if listed is not None and listed[0] == mtime:
            return listed[1]
        files = sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    except OSError:
        return []
    entries = [(path, path.stem) for path in files]
    if time.time_ns() - mtime > _RACY_NS:
        _listings[str(folder)] = (mtime, entries)
    return entries


def _spec_files(folder: Path) -> list[Path]:
    return [path for path, _stem in _spec_entries(folder)]


def named_specs(folders: Iterable[Path]) -> list[tuple[str, Path]]:
    """Every named spec of the folders and the file that wins for it, in search order.

    A file is named by its ``name:`` (by its file name when it declares none, as a
    spec that inherits its name through ``extends`` does).
    """
    seen: dict[str, Path] = {}
    order: list[Path] = []
    for folder in folders:
        named = [(_name_in(path) or path.stem, path) for path in _spec_files(Path(folder))]
        order += [path for _name, path in named]
        # In one folder, NAME.yaml wins over another file that says name: NAME.
        for name, path in sorted(named, key=lambda item: item[1].stem != item[0]):
            seen.setdefault(name, path)
    return sorted(seen.items(), key=lambda item: order.index(item[1]))


def find_named(name: str, folders: Iterable[Path], *, exclude: Iterable[Path] = ()) -> Path:
    """The file of the spec named ``name``: ``PluginError`` (``spec_not_found``) when there is none.

    In each folder, in order: ``NAME.yaml``/``NAME.yml`` when its ``name:`` is NAME
    (or it declares none), else the first file (sorted) whose ``name:`` is NAME.
    ``exclude`` skips files (a spec extending the spec it shadows is not its own base).
    """
    skipped = {p.resolve() for p in exclude}
    searched = [Path(f) for f in folders]
    for folder in searched:
        entries = _spec_entries(folder)
        if skipped:
            entries = [(p, stem) for p, stem in entries if p.resolve() not in skipped]
        for path, stem in entries:
            if stem == name and _name_in(path) in (name, None):
                return path
        for path, _stem in entries:
            if _name_in(path) == name:
                return path
    where = ", ".join(str(f) for f in searched) or "no folders"
    raise PluginError(f"no spec named {name!r} (looked in {where})", code="spec_not_found")


# --- extends ----------------------------------------------------------------------------


def merge(base: Any, over: Any) -> Any:
    """``over`` laid over ``base``: mappings merge key by key; lists and scalars replace.

    A key set to ``null`` in ``over`` removes the key ``base`` had, so the key
    takes its default (and a request parameter is no longer sent).
    """
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out[key], value) if key in out else value
    return out


def resolve_extends(
    data: Any,
    source: str,
    *,
    folder: Path,
    search_paths: Iterable[Path] | None,
    chain: tuple[Path, ...] = (),
) -> tuple[Any, tuple[str, ...]]:
    """The document with its ``extends`` resolved, and the files it was built from (bases last).

    ``folder`` is where a relative path is read from (the extending file's own);
    ``chain`` the files already on the way, to refuse a cycle.
    """
    if not isinstance(data, dict) or "extends" not in data:
        return data, ()
    ref = data["extends"]
    rest = {k: v for k, v in data.items() if k != "extends"}

    def refuse(message: str) -> SpecError:
        return SpecError([SpecProblem("$.extends", message, source)])

    if not isinstance(ref, str) or not ref.strip():
        raise refuse("expected the name or the path of the spec to extend")
    if len(chain) >= MAX_EXTENDS:
        raise refuse(f"specs extend each other more than {MAX_EXTENDS} deep")
    base_path = _base_path(ref, folder, search_paths, chain, refuse)
    if base_path.resolve() in {p.resolve() for p in chain}:
        route = " -> ".join(str(p) for p in (*chain, base_path))
        raise refuse(f"extends goes round in a cycle: {route}")
    label = f"{base_path} (extended by {source})"
    try:
        base = read_document(base_path)
    except SpecError as exc:
        raise SpecError([SpecProblem(p.path, p.message, label) for p in exc.problems]) from None
    if not isinstance(base, dict):
        raise refuse(f"{base_path} is not a spec (not a mapping)")
    base, bases = resolve_extends(
        base, label, folder=base_path.parent, search_paths=search_paths, chain=(*chain, base_path)
    )
    return merge(base, rest), (str(base_path), *bases)


def _base_path(
    ref: str, folder: Path, search_paths: Iterable[Path] | None, chain: tuple[Path, ...], refuse: Any
) -> Path:
    """The file ``extends: ref`` names: a spec name on the search path, or a path from ``folder``."""
    from flowengine._spec_check import SPEC_NAME

    if SPEC_NAME.match(ref) and not ref.endswith(_SUFFIXES):
        if search_paths is None:
            from flowengine._plugins import spec_paths

            search_paths = spec_paths()
        try:
            return find_named(ref, search_paths, exclude=chain)
        except PluginError as exc:
            raise refuse(exc.message) from None
    path = Path(ref).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise refuse(f"no spec file {str(path)!r} to extend")
    return path


def extends_label(source: str, bases: tuple[str, ...]) -> str:
    """How problems of a spec built from ``bases`` name their source: every file involved."""
    return source if not bases else f"{source} (extends {', '.join(bases)})"
