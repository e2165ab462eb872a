"""Reading batch inputs: JSON lines of recorded callbacks, CSV rows of credentials.

Items are named by position (``line 3``, ``row 7``), never by a value: a URL
carries a code and a row carries credentials.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from flowengine import ConfigError, FlowSpec

from ._jobs import ExchangeItem, GrantItem

__all__ = ["read_exchange_file", "read_grant_file"]


def read_exchange_file(path: Path) -> list[ExchangeItem]:
    """One item per non-blank line of a JSON-lines file: ``{"url": …}`` or ``{"flow_id": …}``.

    A line that cannot be read becomes an item that fails with ``input_invalid``
    (the rest of the file still runs); the message never repeats the line.
    """
    items = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            item_id = f"line {number}"
            try:
                data = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                items.append(ExchangeItem(item_id, invalid="not UTF-8 text"))
                continue
            except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
                items.append(ExchangeItem(item_id, invalid="not a JSON object"))
                continue
            items.append(_exchange_item(item_id, data))
    return items


def _exchange_item(item_id: str, data: Any) -> ExchangeItem:
    if not isinstance(data, dict):
        return ExchangeItem(item_id, invalid="not a JSON object")
    unknown = sorted(set(data) - {"url", "flow_id", "session", "spec"})
    values = {k: v for k, v in data.items() if k not in unknown}
    if unknown:
        return ExchangeItem(item_id, invalid=f"unknown key(s): {', '.join(map(str, unknown))[:100]}")
    if not all(isinstance(v, str) and v for v in values.values()):
        return ExchangeItem(item_id, invalid="every value must be a non-empty string")
    if ("url" in values) == ("flow_id" in values):
        return ExchangeItem(item_id, invalid='give exactly one of "url" and "flow_id"')
    return ExchangeItem(
        item_id,
        url=values.get("url"),
        flow_id=values.get("flow_id"),
        session=values.get("session"),
        spec=values.get("spec"),
    )


def read_grant_file(path: Path, spec: FlowSpec) -> list[GrantItem]:
    """One item per CSV row; the header names the spec's inputs (``app_id,app_token``) and
    connection variables (``subdomain``), in any order.

    A header naming something the spec does not declare is a ``ConfigError``
    (a typo would otherwise fail every row); a short row fails as ``input_invalid``.
    """
    try:
        return _grant_items(path, spec)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (save the CSV as UTF-8): {exc.reason}") from None
    except csv.Error as exc:  # a cell over the csv module's size limit, a NUL byte
        raise ConfigError(f"{path}: not a CSV file this can read: {exc}") from None


def _grant_items(path: Path, spec: FlowSpec) -> list[GrantItem]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        unknown = sorted(set(columns) - set(spec.inputs) - set(spec.connection))
        if not columns or unknown:
            declared = ", ".join([*spec.inputs, *spec.connection]) or "none"
            raise ConfigError(
                f"{path}: the CSV header must name inputs or connection variables of spec "
                f"{spec.name!r} ({declared}); "
                f"unknown: {', '.join(unknown) or 'no header'}"
            )
        items = []
        for number, row in enumerate(reader, start=1):
            item_id = f"row {number}"
            values = {name.strip(): (value or "").strip() for name, value in row.items() if name is not None}
            if None in row or any(not value for value in values.values()):
                items.append(GrantItem(item_id, {}, invalid="a value is missing, or the row has extra cells"))
                continue
            connection = {name: values.pop(name) for name in list(values) if name in spec.connection}
            items.append(GrantItem(item_id, values, connection=connection))
    return items
