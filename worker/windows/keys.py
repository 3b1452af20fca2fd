"""The one place that names a user's Redis keys.

Every key of one user shares a Redis Cluster hash tag, so a Lua script that
touches all of them runs on one node::

    {prefix}:{<tag>}:w    sorted set: score = event ts (ms), member = event_id
    {prefix}:{<tag>}:e    hash: event_id -> event JSON (orjson), user_id left out
    {prefix}:{<tag>}:v    string: the window's version token (worker/windows/window_cache.py)

Other state kept per user goes under the same tag (:meth:`KeyBuilder.user_key`), state that
holds no user's data under ``{prefix}:<namespace>:<name>`` (:meth:`KeyBuilder.shared_key`,
never pseudonymised).

The tag is the user id with ``%``, ``{`` and ``}`` percent-escaped (a brace in
the id would otherwise change which part of the key Redis hashes), or, when a
``secret`` is given, the first 32 hex characters (128 bits) of
HMAC-SHA256(secret, user_id): raw user ids then never reach Redis
(pseudonymisation; the mapping cannot be reversed without the secret, but the
same user always lands on the same keys, so ``forget`` still works).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["KeyBuilder", "key_builder"]

_TAG_HEX_CHARS = 32
_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


class KeyBuilder:
    """Builds the Redis keys of one user; see the module docstring for the layout."""

    __slots__ = ("_prefix", "_secret")

    def __init__(self, prefix: str, secret: bytes | None = None) -> None:
        if not prefix:
            raise ValueError("key prefix must not be empty")
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"key prefix must not contain braces (hash tags): {prefix!r}")
        if secret is not None and (not isinstance(secret, bytes) or not secret):
            raise ValueError("secret must be non-empty bytes (or None for no pseudonymisation)")
        self._prefix = prefix
        self._secret = secret

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def pseudonymised(self) -> bool:
        return self._secret is not None

    def tag(self, user_id: str) -> str:
        """The hash tag of ``user_id`` (without braces): escaped id or keyed HMAC."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
        if self._secret is not None:
            digest = hmac.new(self._secret, user_id.encode("utf-8"), hashlib.sha256)
            return digest.hexdigest()[:_TAG_HEX_CHARS]
        return user_id.translate(_ESCAPES)

    def window(self, user_id: str) -> str:
        """Sorted set of the user's event ids, scored by event time (ms)."""
        return f"{self._prefix}:{{{self.tag(user_id)}}}:w"

    def events(self, user_id: str) -> str:
        """Hash of the user's event payloads, by event id."""
        return f"{self._prefix}:{{{self.tag(user_id)}}}:e"

    def user_keys(self, user_id: str) -> tuple[str, str, str]:
        """The window script's keys of the user: ``(window, events, version)``; one slot."""
        base = f"{self._prefix}:{{{self.tag(user_id)}}}:"
        return base + "w", base + "e", base + "v"

    def user_key(self, user_id: str, name: str) -> str:
        """Another key of the user, ``{prefix}:{<tag>}:<name>``: same hash tag, same slot."""
        if name in ("w", "e", "v") or not name or "{" in name or "}" in name:
            raise ValueError(f"not a free user key name: {name!r}")
        return f"{self._prefix}:{{{self.tag(user_id)}}}:{name}"

    def tag_key(self, tag: str, name: str) -> str:
        """:meth:`user_key` of the user whose hash tag is ``tag`` (state that names users by
        tag, such as the pending outcomes' due index, finds their keys with it)."""
        if name in ("w", "e", "v") or not name or "{" in name or "}" in name:
            raise ValueError(f"not a free user key name: {name!r}")
        return f"{self._prefix}:{{{tag}}}:{name}"

    def published_id(self, tag: str) -> str:
        """The user id to publish for a hash tag: the user id itself, or, when pseudonymised,
        the tag (the pseudonym; the raw id is not recoverable, by design)."""
        if self._secret is not None:
            return tag
        return unquote(tag)

    def shared_key(self, namespace: str, name: str) -> str:
        """A key that holds no user's data, ``{prefix}:<namespace>:<name>`` (braces escaped in
        ``name``: no hash tag)."""
        if not namespace or "{" in namespace or "}" in namespace or ":" in namespace:
            raise ValueError(f"bad key namespace: {namespace!r}")
        return f"{self._prefix}:{namespace}:{name.translate(_ESCAPES)}"

    def pattern(self) -> str:
        """A SCAN ``MATCH`` pattern for every per-user key built here (operations, tests)."""
        prefix = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix)
        return f"{prefix}:{{*}}:*"

    def __repr__(self) -> str:
        return f"KeyBuilder(prefix={self._prefix!r}, pseudonymised={self.pseudonymised})"


def key_builder(settings: Settings) -> KeyBuilder:
    """The worker's key builder: ``INTENT_KEY_PREFIX`` and, when set, ``INTENT_KEY_SECRET``
    (pseudonymised tags); a bad value is a :class:`~worker.errors.ConfigError`."""
    secret = None
    if settings.key_secret is not None:
        secret = settings.key_secret.get_secret_value().encode()
        if not secret:
            raise ConfigError("INTENT_KEY_SECRET is set but empty: unset it or give a key")
    try:
        return KeyBuilder(settings.key_prefix, secret)
    except ValueError as exc:
        raise ConfigError(f"INTENT_KEY_PREFIX={settings.key_prefix!r}: {exc}") from None
