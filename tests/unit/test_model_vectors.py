"""EventVectors with a fake encoder and the memory store: each distinct phrase is encoded once,
per encoder; the LRU, then the store, then one encoder call off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from tests.support.fake_encoder import FakeEncoder
from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
from worker.errors import StoreError
from worker.model.phrase_encoder import TorchPhraseEncoder, encoder_fingerprint
from worker.model.vectors import STORED_DTYPE, EventVectors
from worker.vectors import MemoryVectorStore, phrase_digest, vector_key

DIM = 8


class FailingStore(MemoryVectorStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail_puts = True

    async def put_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if self.fail_puts:
            raise StoreError("redis write failed")
        await super().put_many(items, ttl_s)


PHRASES = ["viewed electronics smartphone, apple, price 1000-2000",
           'searched "sofa grey"', "added to cart Oslo sofa, ikea, price 500-1000 EUR"]


def f16(vector: np.ndarray) -> np.ndarray:
    return vector.astype(STORED_DTYPE).astype(np.float32)


async def test_rows_in_input_order_rounded_through_float16() -> None:
    enc = FakeEncoder()
    out = await EventVectors(enc).vectors(PHRASES)
    assert out.dtype == np.float32 and out.shape == (3, DIM)
    for row, phrase in zip(out, PHRASES, strict=True):
        np.testing.assert_array_equal(row, f16(enc.vector(phrase)))


async def test_a_second_batch_of_the_same_phrases_does_not_call_the_encoder() -> None:
    enc = FakeEncoder()
    vectors = EventVectors(enc, store=MemoryVectorStore())
    first = await vectors.vectors(PHRASES)
    second = await vectors.vectors(list(reversed(PHRASES)))
    assert len(enc.calls) == 1
    np.testing.assert_array_equal(second, first[::-1])
    assert (vectors.process_hits, vectors.store_hits, vectors.encoded) == (3, 0, 3)


async def test_duplicates_are_encoded_once_in_one_call() -> None:
    enc = FakeEncoder()
    vectors = EventVectors(enc)
    batch = [PHRASES[0], PHRASES[1], PHRASES[0], PHRASES[0], PHRASES[2], PHRASES[1]]
    out = await vectors.vectors(batch)
    assert enc.calls == [PHRASES]  # one call, each distinct phrase once
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[5])
    assert vectors.encoded == 3 and vectors.encoder_calls == 1


async def test_only_unseen_phrases_go_to_the_encoder() -> None:
    enc = FakeEncoder()
    vectors = EventVectors(enc)
    await vectors.vectors(PHRASES[:2])
    await vectors.vectors([PHRASES[1], PHRASES[2], PHRASES[0], "viewed a product"])
    assert enc.calls == [PHRASES[:2], [PHRASES[2], "viewed a product"]]


async def test_a_restarted_process_finds_the_vectors_in_the_store() -> None:
    store = MemoryVectorStore()
    first = FakeEncoder()
    before = await EventVectors(first, store=store).vectors(PHRASES)
    again = FakeEncoder()  # same id: the same weights in a new process
    restarted = EventVectors(again, store=store)
    after = await restarted.vectors(PHRASES)
    assert again.calls == []
    np.testing.assert_array_equal(after, before)  # bitwise: fresh and stored are both float16
    assert (restarted.process_hits, restarted.store_hits, restarted.encoded) == (0, 3, 0)
    assert store.gets == 2 and store.puts == 1
    await restarted.vectors(PHRASES)
    assert restarted.process_hits == 3 and store.gets == 2  # the LRU answered, not the store


async def test_two_encoders_never_share_vectors() -> None:
    store = MemoryVectorStore()
    a, b = FakeEncoder("model-a"), FakeEncoder("model-b")
    va = await EventVectors(a, store=store).vectors(PHRASES)
    vb = await EventVectors(b, store=store).vectors(PHRASES)
    assert b.calls == [PHRASES]
    assert not np.array_equal(va, vb)
    assert len(store) == 6
    assert vector_key("model-a", PHRASES[0]) != vector_key("model-b", PHRASES[0])


async def test_the_lru_is_bounded_and_zero_turns_it_off() -> None:
    store = MemoryVectorStore()
    enc = FakeEncoder()
    small = EventVectors(enc, store=store, cache_size=2)
    await small.vectors(PHRASES)
    await small.vectors(PHRASES[:1])  # evicted (least recently used): read from the store
    assert (small.process_hits, small.store_hits) == (0, 1)
    off = EventVectors(FakeEncoder(), store=store, cache_size=0)
    await off.vectors(PHRASES)
    await off.vectors(PHRASES)
    assert (off.process_hits, off.store_hits, off.encoded) == (0, 6, 0)


async def test_a_stored_value_of_the_wrong_size_is_encoded_again() -> None:
    store = MemoryVectorStore()
    await store.put_many({vector_key("fake-1", PHRASES[0]): b"\x00" * 6}, ttl_s=60)
    enc = FakeEncoder()
    out = await EventVectors(enc, store=store).vectors(PHRASES[:1])
    assert enc.calls == [PHRASES[:1]]
    np.testing.assert_array_equal(out[0], f16(enc.vector(PHRASES[0])))
    assert len((await store.get_many([vector_key("fake-1", PHRASES[0])])).popitem()[1]) == 16


async def test_a_store_failure_is_a_store_error_and_a_retry_does_not_encode_again() -> None:
    store = FailingStore()
    enc = FakeEncoder()
    vectors = EventVectors(enc, store=store)
    with pytest.raises(StoreError):
        await vectors.vectors(PHRASES)
    store.fail_puts = False
    await vectors.vectors(PHRASES)
    assert len(enc.calls) == 1


async def test_the_encoder_runs_off_the_event_loop() -> None:
    enc = FakeEncoder()
    await EventVectors(enc).vectors(PHRASES)
    assert enc.threads and threading.get_ident() not in enc.threads


async def test_empty_input_and_a_bad_encoder_or_shape() -> None:
    enc = FakeEncoder()
    out = await EventVectors(enc).vectors([])
    assert out.shape == (0, DIM) and enc.calls == []
    with pytest.raises(ValueError, match="encoder id"):
        EventVectors(FakeEncoder("a:b"))
    wrong = FakeEncoder()
    wrong.encode = lambda phrases: np.zeros((len(phrases), DIM + 1))  # another size than dim
    with pytest.raises(ValueError, match="shape"):
        await EventVectors(wrong).vectors(PHRASES)


async def test_the_memory_store_expires_entries() -> None:
    now = [100.0]
    store = MemoryVectorStore(clock=lambda: now[0])
    await store.put_many({"e:a": b"12", "e:b": b"34"}, ttl_s=10)
    now[0] = 109.9
    assert await store.get_many(["e:a", "e:b", "e:c"]) == {"e:a": b"12", "e:b": b"34"}
    await store.put_many({"e:b": b"56"}, ttl_s=10)  # a write refreshes the TTL
    now[0] = 110.0
    assert await store.get_many(["e:a", "e:b"]) == {"e:b": b"56"}
    await store.put_many({"e:c": b"78"}, ttl_s=1)
    now[0] = 120.0
    assert await store.get_many(["e:b", "e:c"]) == {}
    assert len(store) == 0


def test_keys() -> None:
    assert len(phrase_digest("viewed a product")) == 32
    assert phrase_digest("viewed a product") != phrase_digest("viewed a product ")
    assert vector_key("enc", "x") == f"enc:{phrase_digest('x')}"
    for bad in ("", "a{b}", "a:b", "a b"):
        with pytest.raises(ValueError):
            vector_key(bad, "x")


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder", max_positions=64)


async def test_the_torch_phrase_encoder_matches_one_phrase_at_a_time(
        tiny_encoder_dir: Path) -> None:
    enc = TorchPhraseEncoder.from_directory(tiny_encoder_dir, name="tiny", batch_size=2)
    assert enc.dim == TINY_DIM
    phrases = PHRASES + ["viewed a product", "purchased"]
    together = enc.encode(phrases)
    alone = np.stack([enc.encode([p])[0] for p in phrases])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # padding and order change nothing
    vectors = EventVectors(enc)
    np.testing.assert_allclose(await vectors.vectors(phrases), together, atol=1e-2)


def test_the_encoder_id_follows_the_weights_and_the_budget(
        tiny_encoder_dir: Path, tmp_path: Path) -> None:
    same = TorchPhraseEncoder.from_directory(tiny_encoder_dir, name="tiny")
    assert same.encoder_id == TorchPhraseEncoder.from_directory(tiny_encoder_dir,
                                                                name="tiny").encoder_id
    assert vector_key(same.encoder_id, "x")  # a valid id
    other = write_tiny_encoder(tmp_path / "other", seed=1, max_positions=64)
    assert encoder_fingerprint(other) != encoder_fingerprint(tiny_encoder_dir)
    shorter = TorchPhraseEncoder.from_directory(tiny_encoder_dir, name="tiny", max_tokens=16)
    assert shorter.encoder_id != same.encoder_id
    before = encoder_fingerprint(other)
    (other / "README.md").write_text("not part of the fingerprint")
    assert encoder_fingerprint(other) == before
    (other / "config.json").write_text((other / "config.json").read_text() + " ")
    assert encoder_fingerprint(other) != before
