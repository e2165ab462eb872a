"""Records <-> rows: the columns a flow is written as, reading rows back, and what a row's record held.

A flow row also says whether its record holds a secret (``holds_secret``: a code, a
PKCE verifier or a device code), so a write can tell, from the row it replaces or
deletes and without decoding it, whether it supersedes one (SECURITY.md 30): only then
must the store empty its WAL.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from flowengine import Flow, RecordCodec, StoreError, Token, flow_columns

__all__ = [
    "FLOW_COLUMNS",
    "flow_values",
    "holds_secret",
    "load_flow",
    "load_token",
    "supersedes",
]

# Every column a write of a flow sets but its id, in flow_values' order (the triggers of _schema
# count from step_*).
FLOW_COLUMNS = (
    "spec, state, state_hash, version, created_at, expires_at, record,"
    " step_hour, step_source, step_event, step_error, holds_secret"
)


def _secrets(flow: Flow) -> tuple[str | None, str | None, str | None]:
    """The secrets a flow's record may hold, each None when it holds none: what ``Flow.redacted`` drops."""
    device_code = flow.device.device_code if flow.device is not None else None
    return flow.code, flow.code_verifier, device_code


def flow_values(flow: Flow, codec: RecordCodec) -> tuple[Any, ...]:
    """The values of ``FLOW_COLUMNS``, then the flow's id."""
    return (*flow_columns(flow, codec.dump_flow(flow)), int(holds_secret(flow)), flow.id)


def supersedes(held: int | None, record: bytes | None, flow: Flow, codec: RecordCodec) -> bool:
    """True when writing ``flow`` over a row supersedes a secret that row's record held.

    ``held`` is the row's ``holds_secret`` (None: written before the column, so it may
    hold one). ``record`` is the row's record, needed only when ``flow`` holds a secret
    too, since only then the answer depends on the values (the same code or verifier
    kept supersedes nothing; another one does); None when not read. A record that cannot
    be read counts as superseding.
    """
    if held == 0:
        return False
    if record is None:
        return True
    try:
        old = codec.load_flow(record, flow.id)
    except StoreError:
        return True
    return any(was is not None and was != now for was, now in zip(_secrets(old), _secrets(flow), strict=True))


def holds_secret(flow: Flow) -> bool:
    """True when the flow's record holds a secret (a code, a verifier or a device code)."""
    return any(value is not None for value in _secrets(flow))


def _utf8(text: object) -> bytes:
    # Bytes, not str: compare_digest refuses non-ASCII str, and damaged records may hold any.
    return str(text).encode("utf-8", "surrogatepass")


def load_flow(row: Sequence[Any], codec: RecordCodec) -> Flow:
    """Decode a flow row (id, spec, state, state_hash, version, record), checking it against its columns.

    The columns are not sealed; a record that disagrees with them (a row
    edited by hand, a record pasted under another id) is damaged, since
    lookups and compare-and-set would act on the wrong thing.
    """
    flow_id, spec, state, state_hash, version, record = row
    flow = codec.load_flow(record, flow_id)
    if not (
        flow.id == flow_id
        and flow.spec == spec
        and flow.state == state
        and flow.version == version
        and hmac.compare_digest(_utf8(flow.state_hash), _utf8(state_hash))
    ):
        raise StoreError(
            f"stored flow {flow_id!r} does not match its indexed columns",
            code="store_corrupt",
            retryable=False,
        )
    return flow


def load_token(row: Sequence[Any], codec: RecordCodec) -> Token:
    """Decode a token row (key, provider, record), checking it is the token its key and provider say."""
    key, provider, record = row
    token = codec.load_token(record, key)
    if token.key != key or token.provider != provider:
        raise StoreError(
            f"stored token {key!r} does not match its indexed columns",
            code="store_corrupt",
            retryable=False,
        )
    return token
