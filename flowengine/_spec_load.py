"""Reading a spec: YAML or a mapping, structured by cattrs, then judged by ``_spec_check``.

``load_spec`` accepts a spec name (found through the ``flowengine_spec_paths``
hook), a path, YAML text or a mapping, and always runs the same validation:
structure (cattrs, no unknown keys, no silent coercion of ``1.9`` to ``1`` or
``None`` to ``"None"``) and meaning (endpoints, templates, the machine). Every
problem found is reported at once, each as ``FILE: $.path: message``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence
from cattrs.gen import make_dict_structure_fn, override

from flowengine import _yaml
from flowengine._bounded import cap, shown
from flowengine._errors import SpecError, SpecProblem
from flowengine._presets import expand_preset
from flowengine._records import Outcome
from flowengine._spec import FlowSpec, MachineSpec, TransitionSpec
from flowengine._spec_check import SPEC_NAME, check_names, check_spec
from flowengine._spec_sources import (
    extends_label,
    find_named,
    parse_yaml,
    read_document,
    resolve_extends,
)

__all__ = ["load_spec", "spec_document", "spec_from_mapping"]


class _WrongType(TypeError):
    """A value of the wrong YAML type; its message is shown as it is."""


def _expect(kind: type | tuple[type, ...], label: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise _WrongType(f"expected {label}, got a boolean")
        if not isinstance(value, kind):
            got = "nothing (null)" if value is None else f"{type(value).__name__} {shown(value)}"
            raise _WrongType(f"expected {label}, got {got}")
        return value

    return hook


def _tuples(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        inner = homogenous_tuple_structure_factory(type_, conv)

        def hook(value: Any, t: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise _WrongType(f"expected a list, got {type(value).__name__}")
            return inner(value, t)

        return hook

    return factory


def _mappings(conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Mappings structured key by key, every bad entry reported with its key."""

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, dict):
            raise _WrongType(f"expected a mapping, got {type(value).__name__}")
        key_type, value_type = get_args(type_)
        out: dict[Any, Any] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            try:
                out[conv.structure(key, key_type)] = conv.structure(item, value_type)
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), f"key {shown(key)}"]
                errors.append(_KeyedError(key, exc))
        if errors:
            raise cattrs.ClassValidationError("mapping", errors, dict)
        return out

    return hook


def _literals(type_: Any) -> Callable[[Any, Any], Any]:
    allowed = get_args(type_)

    def hook(value: Any, _t: Any) -> Any:
        if value not in allowed or type(value) is not type(allowed[0]):
            choices = ", ".join(repr(a) for a in allowed)
            raise _WrongType(f"expected one of {choices}, got {shown(value)}")
        return value

    return hook


def _outcome(value: Any, _t: Any) -> Outcome:
    if not isinstance(value, str) or value not in set(Outcome):
        raise _WrongType(f"expected an outcome ({', '.join(Outcome)}), got {shown(value)}")
    return Outcome(value)


def _make_converter(*, forbid_extra_keys: bool = True) -> cattrs.Converter:
    """A strict converter: no extra keys, no coercion, every problem reported with its path."""
    conv = cattrs.Converter(forbid_extra_keys=forbid_extra_keys, detailed_validation=True)
    conv.register_structure_hook(str, _expect(str, "a string"))
    conv.register_structure_hook(int, _expect(int, "an integer"))
    conv.register_structure_hook(bool, _expect(bool, "true or false"))
    conv.register_structure_hook_factory(
        lambda t: is_sequence(t) and getattr(t, "__origin__", None) is tuple, _tuples(conv)
    )
    mappings = _mappings(conv)
    conv.register_structure_hook_factory(
        lambda t: getattr(t, "__origin__", None) in (Mapping, dict), lambda _t: mappings
    )
    conv.register_structure_hook_factory(lambda t: getattr(t, "__origin__", None) is Literal, _literals)
    conv.register_structure_hook(Outcome, _outcome)
    transition_fn = make_dict_structure_fn(TransitionSpec, conv)

    def transition(value: Any, type_: Any) -> TransitionSpec:
        if isinstance(value, dict) and isinstance(value.get("source"), str):
            value = {**value, "source": [value["source"]]}
        return transition_fn(value, type_)

    conv.register_structure_hook(TransitionSpec, transition)
    conv.register_structure_hook(FlowSpec, make_dict_structure_fn(FlowSpec, conv, source=override(omit=True)))
    return conv


class _KeyedError(Exception):
    def __init__(self, key: Any, error: Exception) -> None:
        super().__init__(str(error))
        self.key = key
        self.error = error


_converter = _make_converter()


def _flatten(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """Turn cattrs' nested exception groups into (path, message) pairs."""
    if isinstance(exc, _KeyedError):
        return _flatten(exc.error, f"{path}.{cap(str(exc.key), _MAX_KEY)}")
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        if isinstance(exc, cattrs.ClassValidationError) and exc.cl is dict:
            return [pair for sub in exc.exceptions for pair in _flatten(sub, path)]
        out: list[tuple[str, str]] = []
        for sub in exc.exceptions:
            note = next(
                (
                    n
                    for n in getattr(sub, "__notes__", [])
                    if isinstance(n, cattrs.AttributeValidationNote | cattrs.IterableValidationNote)
                ),
                None,
            )
            if isinstance(note, cattrs.AttributeValidationNote):
                out += _flatten(sub, f"{path}.{note.name}")
            elif isinstance(note, cattrs.IterableValidationNote):
                out += _flatten(sub, f"{path}[{note.index}]")
            else:
                out += _flatten(sub, path)
        return out
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = sorted(cap(str(key), _MAX_KEY) for key in exc.extra_fields)
        more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
        return [(path, f"unknown key(s): {', '.join(keys[:10])}{more}")]
    if isinstance(exc, KeyError):
        return [(path, "required key missing")]
    if isinstance(exc, _WrongType):
        return [(path, str(exc))]
    return [(path, f"invalid value ({type(exc).__name__}: {cap(str(exc), 300)})")]


_Names = tuple[Collection[str], Collection[str]] | None
#: A key quoted in a problem's path is cut to this length.
_MAX_KEY = 80


def spec_from_mapping(data: Any, *, source: str = "<mapping>", names: _Names = None) -> FlowSpec:
    """Structure and validate a spec given as a mapping (e.g. parsed YAML or JSON).

    ``names`` (known guard names, known action names) adds the compile-time
    name checks to the same report, so every problem is listed at once.
    """
    if not isinstance(data, dict):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError([SpecProblem("$", f"a spec is a mapping, got {got}", source)])
    try:
        _yaml.check_tree(data)  # a mapping made in Python met no bounded reader
    except _yaml.YamlRefused as exc:
        raise SpecError([SpecProblem(exc.where, exc.message, source)]) from None
    data = _shorthands(data)
    shape = [SpecProblem(path, message, source) for path, message in _machine_shape(data.get("machine"))]
    try:
        spec = _converter.structure(data, FlowSpec)
    except Exception as exc:
        problems = [SpecProblem(path, message, source) for path, message in _flatten(exc, "$")]
        meaning = [] if shape else _meaning_despite_unknown_keys(data, source, names)
        raise SpecError([*shape, *problems, *meaning]) from None
    if shape:
        raise SpecError(shape)
    spec = _with_machine(attrs.evolve(spec, source=source))
    problems = _meaning(spec, names)
    if problems:
        raise SpecError(problems)
    return spec


def _shorthands(data: dict[Any, Any]) -> dict[Any, Any]:
    """The document with its short forms written out: ``callback.keep: [realmId]`` is a mapping."""
    callback = data.get("callback")
    if isinstance(callback, dict) and isinstance(callback.get("keep"), list):
        keep = callback["keep"]
        if all(isinstance(name, str) for name in keep):
            data = {**data, "callback": {**callback, "keep": {name: {} for name in keep}}}
    return data


def _with_machine(spec: FlowSpec) -> FlowSpec:
    """The spec with its machine written out: a flow spec without one gets the preset."""
    if spec.authorization is None:
        return spec
    return attrs.evolve(spec, machine=expand_preset(spec.machine))


def _meaning(spec: FlowSpec, names: _Names) -> list[SpecProblem]:
    problems = list(check_spec(spec))
    if names is not None:
        problems += check_names(spec, *names)
    return problems


@functools.cache
def _lenient_converter() -> cattrs.Converter:
    return _make_converter(forbid_extra_keys=False)


def _meaning_despite_unknown_keys(data: dict[Any, Any], source: str, names: _Names) -> list[SpecProblem]:
    """What the rest of a spec means when only unknown keys stopped it: one typo hides nothing else.

    Structured again with unknown keys ignored; if that fails too, the structural
    problems already listed are all there is to say.
    """
    try:
        spec = _lenient_converter().structure(data, FlowSpec)
    except Exception:
        return []
    return _meaning(_with_machine(attrs.evolve(spec, source=source)), names)


#: What a machine written out must say (a preset reference says none of it).
_WRITTEN = ("states", "initial", "final", "transitions")


def _machine_shape(machine: Any) -> list[tuple[str, str]]:
    """Problems with which keys a ``machine:`` mapping has: a whole machine, or a preset and its ttl."""
    if not isinstance(machine, dict):
        return []  # absent (a preset follows) or not a mapping (the converter says so)
    if machine.get("preset") is not None:
        if any(key in machine for key in _WRITTEN):
            return [
                ("$.machine", "a preset machine takes only ttl: write the whole machine, or name a preset")
            ]
        return []
    return [(f"$.machine.{key}", "required key missing") for key in _WRITTEN if key not in machine]


def _from_text(text: str, source: str, names: _Names = None) -> FlowSpec:
    spec, _bases = _from_document(parse_yaml(text, source), source, names, None)
    return spec


def _from_document(
    data: Any, source: str, names: _Names, path: Path | None
) -> tuple[FlowSpec, tuple[str, ...]]:
    """A parsed document, its ``extends`` resolved, structured and judged; and the files it extends.

    Problems of a spec built on others name every file involved
    (``child.yaml (extends base.yaml)``); the spec's ``source`` stays its own file.
    """
    folder = path.parent if path is not None else Path.cwd()
    chain = (path,) if path is not None else ()
    data, bases = resolve_extends(data, source, folder=folder, search_paths=None, chain=chain)
    if not bases:
        return spec_from_mapping(data, source=source, names=names), ()
    spec = spec_from_mapping(data, source=extends_label(source, bases), names=names)
    return attrs.evolve(spec, source=source), bases


def spec_document(spec: FlowSpec) -> dict[str, Any]:
    """The document ``load_spec`` reads back into an equal spec: plain data, ready for JSON or YAML.

    ``extends`` is already resolved in it; a preset machine is written as
    ``{preset, ttl}``. For sending a spec elsewhere (a sandbox in another process).
    """
    data: dict[str, Any] = _converter.unstructure(spec)
    data.pop("source", None)
    machine = spec.machine
    if machine is not None and machine.preset is not None:
        # As written: a preset reference if it still is the preset, else the machine written out.
        preset = expand_preset(MachineSpec(ttl=machine.ttl, preset=machine.preset))
        data["machine"] = (
            {"preset": machine.preset, "ttl": machine.ttl}
            if machine == preset
            else {**data["machine"], "preset": None}
        )
    return data


def load_spec(
    spec: str | Path | Mapping[str, Any] | FlowSpec,
    *,
    search_paths: Iterable[Path] | None = None,
    names: _Names = None,
) -> FlowSpec:
    """Load and validate a spec from a name, a path, YAML text, a mapping or a FlowSpec.

    A bare name (``"podio"``) is looked up as ``NAME.yaml`` in ``search_paths``,
    which default to the folders plugins return from ``flowengine_spec_paths``.
    A FlowSpec built in Python goes through the same checks as YAML, types included.
    ``names`` = (guard names, action names) also checks the names ``when:``/``do:`` use.
    """
    if isinstance(spec, FlowSpec):
        spec_from_mapping(spec_document(spec), source=spec.source, names=names)
        return spec  # the same object: compiled machines are cached per spec
    if isinstance(spec, Mapping):
        return _from_document(dict(spec), "<mapping>", names, None)[0]
    if isinstance(spec, Path):
        return _from_file(spec, names)
    if not isinstance(spec, str):
        got = type(spec).__name__
        raise SpecError([SpecProblem("$", f"a spec is a name, a path, YAML text or a mapping, not {got}")])
    if _looks_like_text(spec):
        return _from_text(spec, "<text>", names)
    if SPEC_NAME.match(spec) and not spec.endswith((".yaml", ".yml")):
        if search_paths is None:
            from flowengine._plugins import spec_paths

            search_paths = spec_paths()
        return _from_file(find_named(spec, search_paths), names)
    return _from_file(Path(spec), names)


#: Specs read from files, by (path, mtime, size, names): a spec that did not change on
#: disk is the same FlowSpec object, so its compiled machine is reused too.
#: The files a cached spec extends are checked too: a changed base makes a new FlowSpec.
_file_cache: dict[tuple[str, int, int, object], tuple[FlowSpec, tuple[tuple[str, int, int], ...]]] = {}


def _looks_like_text(spec: str) -> bool:
    """True for YAML text rather than a name or a path (a path check that fails is not a path)."""
    if not spec.strip() or "\n" in spec or len(spec) > 4096 or "\0" in spec:
        return True
    try:
        return ":" in spec and not Path(spec).exists()
    except (OSError, ValueError):
        return True


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = getattr(exc, "strerror", None) or str(exc)
        raise SpecError([SpecProblem("$", f"cannot read: {why}", str(path))]) from None
    if stat.st_size > _yaml.MAX_SPEC_BYTES:
        message = f"the file is larger than {_yaml.MAX_SPEC_BYTES // 1024} KiB"
        raise SpecError([SpecProblem("$", message, str(path))])
    return str(path), stat.st_mtime_ns, stat.st_size


def _unchanged(stats: tuple[tuple[str, int, int], ...]) -> bool:
    try:
        return all(_stat(Path(name)) == (name, mtime, size) for name, mtime, size in stats)
    except SpecError:
        return False


def _from_file(path: Path, names: _Names = None) -> FlowSpec:
    known = None if names is None else (frozenset(names[0]), frozenset(names[1]))
    key = (*_stat(path), known)
    cached = _file_cache.get(key)
    if cached is None or not _unchanged(cached[1]):
        spec, bases = _from_document(read_document(path), str(path), names, path)
        cached = _file_cache[key] = (spec, tuple(_stat(Path(base)) for base in bases))
    return cached[0]
