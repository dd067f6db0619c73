"""Sampling a saved checkpoint alone: the model and the tokenizer it carries, refusals that say why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_service import tokenizers
from data_service.tokenizers.bpe import BpeTokenizer
from data_service.tokenizers.char import CharTokenizer
from trainer_service.checkpoint import CheckpointError, save_checkpoint
from trainer_service.model import GPT, GPTConfig
from trainer_service.sampler import PromptError, Sampler

TEXT = "the cat sat on the mat. the dog sat on the log.\n"


def saved(tmp_path: Path, tokenizer, *, with_tokenizer: bool = True, **extra) -> Path:
    torch.manual_seed(0)
    config = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=tokenizer.vocab_size, block_size=24)
    model = GPT(config)
    state = {"model": model.state_dict(), "model_config": vars(model.config), "step": 42} | extra
    if with_tokenizer:
        state["tokenizer"] = tokenizers.save(tokenizer)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, state)
    return path


def test_answers_come_from_the_checkpoints_own_tokenizer(tmp_path: Path):
    tok = CharTokenizer.train([TEXT])
    sampler = Sampler.from_checkpoint(saved(tmp_path, tok))
    assert sampler.step == 42
    answers = sampler.complete("the ", max_new_tokens=30, n=3, seed=1)
    assert len(answers) == 3
    for a in answers:
        assert a.tokens == 30 and not a.stopped and len(a.text) == 30
        assert set(a.text) <= set(TEXT)
    # Seeded: the same answers again; another seed: others.
    again = sampler.complete("the ", max_new_tokens=30, n=3, seed=1)
    assert [a.text for a in again] == [a.text for a in answers]
    other = sampler.complete("the ", max_new_tokens=30, n=3, seed=2)
    assert [a.text for a in other] != [a.text for a in answers]


def test_greedy_and_top_k_one_agree(tmp_path: Path):
    sampler = Sampler.from_checkpoint(saved(tmp_path, CharTokenizer.train([TEXT])))
    greedy = sampler.complete("the cat", max_new_tokens=20, greedy=True)[0].text
    assert sampler.complete("the cat", max_new_tokens=20, top_k=1, seed=5)[0].text == greedy


def test_a_prompt_longer_than_the_block_is_cropped_not_refused(tmp_path: Path):
    sampler = Sampler.from_checkpoint(saved(tmp_path, CharTokenizer.train([TEXT])))
    assert sampler.complete(TEXT * 3, max_new_tokens=5)[0].tokens == 5


def test_an_answer_ends_at_the_end_token(tmp_path: Path):
    tok = CharTokenizer.train([TEXT], specials=["<|endoftext|>"])
    path = saved(tmp_path, tok)
    sampler = Sampler.from_checkpoint(path)
    end = tok.special_id("<|endoftext|>")
    with torch.no_grad():  # make the end token the likeliest everywhere: every hidden state all ones
        sampler.model.transformer.ln_f.weight.zero_()
        sampler.model.transformer.ln_f.bias.fill_(1.0)
        sampler.model.lm_head.weight.zero_()
        sampler.model.lm_head.weight[end] = 1.0
    [answer] = sampler.complete("the", max_new_tokens=10, greedy=True)
    assert answer.stopped and answer.tokens == 0 and answer.text == ""


def test_a_bpe_tokenizer_travels_in_the_checkpoint(tmp_path: Path):
    tok = BpeTokenizer.train([TEXT * 20], options={"vocab_size": "300"})
    [answer] = Sampler.from_checkpoint(saved(tmp_path, tok)).complete("the cat", max_new_tokens=8, seed=0)
    assert answer.tokens == 8 and isinstance(answer.text, str)


def test_a_checkpoint_without_a_tokenizer_is_refused_saying_why(tmp_path: Path):
    path = saved(tmp_path, CharTokenizer.train([TEXT]), with_tokenizer=False)
    with pytest.raises(CheckpointError, match="carries no tokenizer.*train the job again"):
        Sampler.from_checkpoint(path)


def test_a_tokenizer_of_another_size_is_refused(tmp_path: Path):
    path = saved(tmp_path, CharTokenizer.train([TEXT]))
    state = torch.load(path, weights_only=True)
    state["tokenizer"] = tokenizers.save(CharTokenizer.train(["abc"]))
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="its tokenizer has 3 tokens but its model 15"):
        Sampler.from_checkpoint(path)


def test_a_broken_tokenizer_definition_is_refused(tmp_path: Path):
    path = saved(tmp_path, CharTokenizer.train([TEXT]))
    state = torch.load(path, weights_only=True)
    state["tokenizer"] = {"kind": "bpe", "state": {"hf": "not json"}}
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="tokenizer that cannot be rebuilt"):
        Sampler.from_checkpoint(path)


def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no such file"):
        Sampler.from_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", {"weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="not a simtrain checkpoint"):
        Sampler.from_checkpoint(tmp_path / "other.pt")


def test_prompts_the_tokenizer_cannot_encode_are_refused(tmp_path: Path):
    sampler = Sampler.from_checkpoint(saved(tmp_path, CharTokenizer.train([TEXT])))
    with pytest.raises(PromptError, match="cannot encode the prompt.*'Z'"):
        sampler.complete("Zebra")
    with pytest.raises(PromptError, match="empty"):
        sampler.complete("")


def test_a_context_goes_before_the_prompt(tmp_path: Path):
    tok = CharTokenizer.train([TEXT])
    sampler = Sampler.from_checkpoint(saved(tmp_path, tok))
    assert sampler.retrieval is None
    [whole] = sampler.complete("the cat", max_new_tokens=12, greedy=True)
    [after] = sampler.complete("cat", max_new_tokens=12, greedy=True, context=tok.encode("the ").tolist())
    assert after.text == whole.text


def test_a_retrieval_checkpoint_names_its_index_or_is_refused(tmp_path: Path):
    tok = CharTokenizer.train([TEXT])
    retrieval = {"data_service": "127.0.0.1:50051", "dataset_id": "0123456789abcdef"}
    assert Sampler.from_checkpoint(saved(tmp_path, tok, retrieval=retrieval)).retrieval == retrieval
    with pytest.raises(CheckpointError, match="names its retrieval index badly"):
        Sampler.from_checkpoint(saved(tmp_path, tok, retrieval={"dataset_id": 5}))
