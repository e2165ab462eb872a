"""How durable stores turn records into bytes and back, encrypting secrets when keyed.

Every durable store (SQLite, Redis, PostgreSQL) keeps the fields it queries on
(id, spec, state, digests, times, provider, account) in the clear, and the
rest of a record as one JSON document: sealed with Fernet (``cryptography``)
when a key is configured, plain otherwise. So listing or filtering tokens
never decrypts anything; only the records returned are opened, one each.

A key is 32 url-safe base64 bytes (``flowengine.new_store_key()``), given to
the store URL as ``?key_file=PATH`` or through ``FLOWENGINE_KEY``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowengine._errors import ConfigError, StoreError
from flowengine._records import Flow, Token, flow_from_dict, flow_to_dict, token_from_dict, token_to_dict

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["KEY_ENV", "RecordCodec", "codec_for", "new_store_key"]

KEY_ENV = "FLOWENGINE_KEY"
_SEALED = b"fernet:"


def new_store_key() -> str:
    """A fresh encryption key, for ``FLOWENGINE_KEY`` or a key file."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


class RecordCodec:
    """Encodes flows and tokens for a store; ``sealed`` when it encrypts."""

    def __init__(self, key: str | bytes | None = None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                from cryptography.fernet import Fernet
            except ImportError:  # pragma: no cover - cryptography comes with every store extra
                raise ConfigError(
                    "an encryption key is set but the 'cryptography' package is not installed",
                    code="store_key_invalid",
                ) from None
            try:
                self._fernet = Fernet(key)
            except ValueError:
                raise ConfigError(
                    "the store encryption key is not a Fernet key (32 url-safe base64 bytes)",
                    code="store_key_invalid",
                ) from None

    @property
    def sealed(self) -> bool:
        """True when records are encrypted at rest."""
        return self._fernet is not None

    def _dump(self, data: Mapping[str, Any]) -> bytes:
        # ASCII, non-ASCII escaped: a record holds any text it is given, a file name that was not
        # UTF-8 (``spec_source``) included, and reads back the same; never a UnicodeEncodeError.
        raw = json.dumps(data, separators=(",", ":")).encode("ascii")
        return _SEALED + self._fernet.encrypt(raw) if self._fernet is not None else raw

    def _load(self, blob: bytes | str, what: str, name: str) -> Any:
        data = blob.encode("utf-8") if isinstance(blob, str) else bytes(blob)
        try:
            if data.startswith(_SEALED):
                if self._fernet is None:
                    raise StoreError(
                        f"stored {what} {name!r} is encrypted and no key is configured ({KEY_ENV})",
                        code="store_key_missing",
                        retryable=False,
                    )
                data = self._fernet.decrypt(data[len(_SEALED) :])
            return json.loads(data)
        except StoreError:
            raise
        except Exception as exc:
            reason = (
                "cannot be decrypted with this key" if type(exc).__name__ == "InvalidToken" else "is damaged"
            )
            raise StoreError(
                f"stored {what} {name!r} {reason}", code="store_corrupt", retryable=False
            ) from None

    def dump_flow(self, flow: Flow) -> bytes:
        """The flow as bytes (sealed when keyed)."""
        return self._dump(flow_to_dict(flow))

    def load_flow(self, blob: bytes | str, name: str = "?") -> Flow:
        """A flow back from ``dump_flow``; ``StoreError`` naming it when damaged."""
        return flow_from_dict(self._load(blob, "flow", name), name)

    def dump_token(self, token: Token) -> bytes:
        """The token as bytes (sealed when keyed)."""
        return self._dump(token_to_dict(token))

    def load_token(self, blob: bytes | str, name: str = "?") -> Token:
        """A token back from ``dump_token``; ``StoreError`` naming it when damaged."""
        return token_from_dict(self._load(blob, "token", name), name)


def codec_for(options: Mapping[str, str]) -> RecordCodec:
    """The codec a store URL asks for: ``key_file=PATH`` in its query, else ``FLOWENGINE_KEY``."""
    key_file = options.get("key_file")
    if key_file:
        try:
            return RecordCodec(Path(key_file).expanduser().read_text(encoding="ascii").strip())
        except OSError as exc:
            raise ConfigError(
                f"cannot read the key file {key_file!r}: {exc.strerror}", code="store_key_invalid"
            ) from None
        except ValueError:  # a NUL in the path, or a file that is not the key's ASCII text
            raise ConfigError(
                f"the key file {key_file!r} is not a readable path holding a key (ASCII text)",
                code="store_key_invalid",
            ) from None
    return RecordCodec(os.environ.get(KEY_ENV) or None)
