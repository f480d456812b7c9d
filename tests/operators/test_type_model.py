"""The trained message-type model: what it reads, that it answers within the sender's family with
probabilities, that a saved model reads back identically, and that a broken file is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifiers import BUILTIN_MODEL, ClassifierUnavailable, load_type_model
from operators.type_model import (
    FAMILY_TYPES,
    LABELS,
    MAX_CHARS,
    ModelFileError,
    ModelInput,
    TypeModel,
    default_segmenter,
    features,
)

SEGMENT = default_segmenter()


@pytest.fixture(scope="module")
def model() -> TypeModel:
    return TypeModel.load(BUILTIN_MODEL)


def test_features_read_text_words_and_structure_once_each_in_a_fixed_order():
    x = ModelInput(text="橱窗的商品我删了 删了!", family="user", at_me=True, room_type=2)
    f = features(x, SEGMENT)
    assert f == features(x, SEGMENT)
    assert len(f) == len(set(f))
    assert {"fam:user", "room:2", "at:me", "bang:1"} <= set(f)
    assert {"c:橱", "c:橱窗", "c:橱窗的", "w:橱窗", "w:商品"} <= set(f)
    assert "c:\x02橱" in f and "c:!\x03" in f  # the message's start and end are features too


def test_digits_are_one_feature_so_phone_numbers_and_amounts_do_not_grow_the_vocabulary():
    a = features(ModelInput("验证码 482916", "staff"), SEGMENT)
    b = features(ModelInput("验证码 170355", "staff"), SEGMENT)
    assert a == b


TEXTS = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec=None), max_size=20),  # lone surrogates, emoji, control characters
    # the corpus's own alphabet, so that many n-grams and words are in the vocabulary
    st.text(alphabet="扫码了吗在的投诉删视频橱窗商品你们怎么还没结算好的!?！？ @0123", max_size=40),
)


@pytest.fixture(scope="module")
def position(model: TypeModel) -> dict[str, int]:
    return {f: i for i, f in enumerate(model.vocabulary)}


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, family=st.sampled_from(sorted(FAMILY_TYPES)), owner=st.booleans(), at_me=st.booleans())
def test_the_fast_lookup_finds_exactly_the_features_training_reads(
    model, position, text, family, owner, at_me
):
    x = ModelInput(text, family, owner_mentioned=owner, at_me=at_me)
    assert model.indices(x).tolist() == sorted({position[f] for f in features(x, SEGMENT) if f in position})


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, family=st.sampled_from(sorted(FAMILY_TYPES)))
def test_any_text_gets_a_type_of_its_sender_family_with_probabilities_that_sum_to_one(
    model: TypeModel, text: str, family: str
):
    x = ModelInput(text, family)
    probs = model.probabilities(x)
    assert set(probs) == set(FAMILY_TYPES[family])
    assert abs(sum(probs.values()) - 1.0) < 1e-9
    label, p = model.predict(x)
    assert label in FAMILY_TYPES[family] and p == max(probs.values())
    assert model.predict(x) == (label, p)  # deterministic


def test_a_saved_model_reads_back_with_the_same_answers(model: TypeModel, tmp_path):
    path = tmp_path / "copy.model"  # any name: numpy must not append .npz
    model.save(path)
    again = TypeModel.load(path)
    assert again.vocabulary == model.vocabulary and again.meta == model.meta
    x = ModelInput("扫了显示二维码过期了 再发一个呗", "user")
    assert again.probabilities(x) == model.probabilities(x)


def test_weights_that_do_not_fit_the_vocabulary_are_refused():
    with pytest.raises(ModelFileError, match="do not fit"):
        TypeModel(["c:a"], np.zeros((2, len(LABELS))), np.zeros(len(LABELS)), LABELS, segment=SEGMENT)


def test_a_file_that_is_not_a_model_is_refused_with_its_path(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="bad.npz"):
        TypeModel.load(bad)


def test_a_model_of_another_format_is_refused(model: TypeModel, tmp_path, monkeypatch):
    import operators.type_model as tm

    path = tmp_path / "future.npz"
    monkeypatch.setattr(tm, "FORMAT", 99)
    model.save(path)
    monkeypatch.setattr(tm, "FORMAT", 1)
    with pytest.raises(ModelFileError, match="format 99"):
        TypeModel.load(path)


def test_the_setting_chooses_builtin_off_or_a_file_and_a_missing_file_is_an_error(model, tmp_path):
    assert load_type_model("off") is None
    assert load_type_model("builtin").vocabulary == model.vocabulary
    path = tmp_path / "mine.npz"
    model.save(path)
    assert load_type_model(str(path)).meta == model.meta
    with pytest.raises(ClassifierUnavailable, match="worktool train"):
        load_type_model(str(tmp_path / "missing.npz"))


def test_the_model_reads_a_long_text_s_beginning_only_so_its_cost_is_bounded(model: TypeModel):
    head = "扫码了吗 橱窗的商品我删了 " * 100
    long = ModelInput(head + "投诉" * 1_000_000, "user")
    assert len(head) >= MAX_CHARS
    assert features(long, SEGMENT) == features(ModelInput(head, "user"), SEGMENT)
    assert model.predict(long) == model.predict(ModelInput(head, "user"))


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(st.tuples(TEXTS, st.sampled_from(sorted(FAMILY_TYPES))), max_size=12))
def test_a_message_gets_the_same_answer_alone_and_in_any_batch(model: TypeModel, batch):
    xs = [ModelInput(text, family) for text, family in batch]
    alone = [model.predict(x) for x in xs]
    assert model.predict_batch(xs) == alone  # exactly: live and replay cut batches differently
    assert model.predict_batch(xs[::-1]) == alone[::-1]
