"""KeyBuilder: hash-tagged per-user keys, escaping, HMAC pseudonymisation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from redis.crc import key_slot

from worker.windows import KeyBuilder


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (its rule: first '{', then the next '}')."""
    start = key.find("{")
    end = key.find("}", start + 1)
    assert start >= 0 and end > start + 1, f"no usable hash tag in {key!r}"
    return key[start + 1 : end]


def test_layout() -> None:
    keys = KeyBuilder("iw")
    assert keys.window("u1") == "iw:{u1}:w"
    assert keys.events("u1") == "iw:{u1}:e"
    assert keys.user_keys("u1") == ("iw:{u1}:w", "iw:{u1}:e", "iw:{u1}:v")
    assert keys.user_key("u1", "a") == "iw:{u1}:a"
    assert keys.shared_key("cat", "a{b}c") == "iw:cat:a%7Bb%7Dc"
    for taken in ("w", "e", "v", "", "{x}"):
        with pytest.raises(ValueError):
            keys.user_key("u1", taken)
    with pytest.raises(ValueError):
        keys.shared_key("{u1}", "x")


@pytest.mark.parametrize("user", ["u1", "a}b", "}x", "{", "{}", "%7B", "x:y z", "élodie", "😀"])
@pytest.mark.parametrize("secret", [None, b"k"])
def test_all_keys_of_a_user_share_one_slot_and_users_do_not_collide(
    user: str, secret: bytes | None
) -> None:
    keys = KeyBuilder("iw", secret)
    w, e, v = keys.user_keys(user)
    every = (*keys.user_keys(user), keys.user_key(user, "a"))
    assert {hash_tag(k) for k in every} == {keys.tag(user)}
    assert {key_slot(k.encode()) for k in every} == {key_slot(w.encode())}
    others = {"u1", "a}b", "}x", "{", "{}", "%7B", "%257B", "x:y z", "élodie", "😀"} - {user}
    assert w not in {keys.window(o) for o in others}


def test_escaping_is_injective_for_tricky_ids() -> None:
    keys = KeyBuilder("iw")
    tags = [keys.tag(u) for u in ["{", "%7B", "%257B", "}", "%7D"]]
    assert len(set(tags)) == len(tags)
    assert all("{" not in t and "}" not in t for t in tags)


def test_pseudonymised_tag_is_keyed_hmac_and_hides_the_id() -> None:
    secret = b"s3cret"
    keys = KeyBuilder("iw", secret)
    expected = hmac.new(secret, b"alice@example.com", hashlib.sha256).hexdigest()[:32]
    assert keys.tag("alice@example.com") == expected
    assert keys.window("alice@example.com") == f"iw:{{{expected}}}:w"
    assert "alice" not in keys.window("alice@example.com")
    assert keys.tag("alice@example.com") != KeyBuilder("iw", b"other").tag("alice@example.com")
    assert keys.pseudonymised and not KeyBuilder("iw").pseudonymised


@pytest.mark.parametrize(
    ("prefix", "secret"), [("", None), ("a{b", None), ("a}b", None), ("iw", b""), ("iw", "str")]
)
def test_bad_arguments(prefix: str, secret: object) -> None:
    with pytest.raises(ValueError):
        KeyBuilder(prefix, secret)  # type: ignore[arg-type]


@pytest.mark.parametrize("user", ["", None, 5])
def test_bad_user_id(user: object) -> None:
    with pytest.raises(ValueError):
        KeyBuilder("iw").window(user)  # type: ignore[arg-type]


def test_scan_pattern_escapes_glob_characters() -> None:
    assert KeyBuilder("iw").pattern() == "iw:{*}:*"
    assert KeyBuilder("a*b[c]").pattern() == "a\\*b\\[c\\]:{*}:*"


def test_the_windows_package_knows_nothing_about_alerts() -> None:
    # the detectors' state (cooldowns, price samples) lives in worker.anomaly.state
    import re
    from pathlib import Path

    import worker.windows

    package = Path(worker.windows.__file__).parent
    found = [f"{path.name}:{n}" for path in sorted(package.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"cooldown|price|anomal|alert", line, re.IGNORECASE)]
    assert found == []
