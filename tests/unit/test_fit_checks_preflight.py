"""The one-batch pre-flight (a copy trains; the job's model and RNG do not move) and pairs accuracy."""

from __future__ import annotations

import torch

from trainer_service.model import GPT, GPTConfig
from trainer_service.report.accuracy import pairs_accuracy, split_rows
from trainer_service.report.preflight import overfit_one_batch

V, BLOCK = 13, 12


def model(dropout: float = 0.1) -> GPT:
    torch.manual_seed(0)
    p = {"embd_pdrop": dropout, "resid_pdrop": dropout, "attn_pdrop": dropout}
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=V, block_size=BLOCK, **p))


def batch(rows: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    windows = torch.randint(0, V, (rows, BLOCK + 1), generator=g)
    return windows[:, :-1], windows[:, 1:]


def test_preflight_overfits_a_copy_and_leaves_the_model_and_rng_alone() -> None:
    gpt = model()
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    torch.manual_seed(42)
    rng = torch.get_rng_state()
    result = overfit_one_batch(gpt, *batch(), steps=40, lr=1e-2, ratio=0.5)
    assert result["passed"] and result["final_loss"] < 0.5 * result["initial_loss"]
    assert len(result["losses"]) == 41 and result["rows"] == 4
    assert torch.equal(torch.get_rng_state(), rng)
    for name, value in gpt.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert gpt.training  # the caller's mode is untouched too


def test_preflight_fails_when_no_target_takes_loss() -> None:
    x, y = batch()
    result = overfit_one_batch(model(), x, torch.full_like(y, -1), steps=3, lr=1e-2, ratio=0.5)
    assert not result["passed"] and result["initial_loss"] == 0.0  # the loss of no target is 0, not NaN


END = 1


def pairs(examples: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((len(examples), BLOCK), END)
    y = torch.full((len(examples), BLOCK), -1)
    for i, (prompt, answer) in enumerate(examples):
        seq = torch.tensor(prompt + answer + [END])[: BLOCK + 1]
        x[i, : len(seq) - 1], y[i, : len(seq) - 1] = seq[:-1], seq[1:]
        y[i, : len(prompt) - 1] = -1
    return x, y


def test_rows_split_into_prompt_and_answer_and_cut_rows_are_left_out() -> None:
    x, y = pairs([([2, 3, 4], [5, 6]), ([7, 8], [9]), ([2] * 9, [3, 4, 5, 6])])
    assert split_rows(x, y) == [([2, 3, 4], [5, 6, END]), ([7, 8], [9, END])]


def test_a_row_of_several_replies_is_not_judged_as_one_answer() -> None:
    x, y = pairs([([2, 3], [5, 6, 7, 8]), ([7, 8], [9])])
    y[0, 3] = -1  # a user turn between two replies (a conversation's loss mask)
    assert split_rows(x, y) == [([7, 8], [9, END])]


class Oracle(torch.nn.Module):
    """Answers every prompt from a table, greedily, the way ``GPT.generate`` appends tokens."""

    def __init__(self, answers: dict[tuple[int, ...], list[int]]) -> None:
        super().__init__()
        self.answers = answers
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.generated: list[int] = []

    def generate(self, idx: torch.Tensor, max_new_tokens: int, do_sample: bool = False) -> torch.Tensor:
        assert not do_sample and not self.training
        self.generated.append(idx.size(0))
        rows = [(self.answers[tuple(r)] + [0] * max_new_tokens)[:max_new_tokens] for r in idx.tolist()]
        return torch.cat([idx, torch.tensor(rows)], dim=1)


def test_exact_match_needs_the_whole_answer_and_its_end() -> None:
    x, y = pairs([([2, 3], [5, 6]), ([3, 2], [6, 5]), ([4, 4], [7]), ([9, 9, 9], [8])])
    oracle = Oracle(
        {
            (2, 3): [5, 6, END],  # right
            (3, 2): [6, 5, 5, END],  # one token too many
            (4, 4): [7, 7, 7, 7],  # never ends
            (9, 9, 9): [8, END],  # right
        }
    )
    result = pairs_accuracy(oracle, x, y, decode=lambda ids: "".join(chr(96 + i) for i in ids))
    assert result["examples"] == 4 and result["correct"] == 2 and result["accuracy"] == 0.5
    assert [i["ok"] for i in result["items"]] == [True, False, False, True]
    assert result["items"][1] == {"prompt": "cb", "expected": "fe", "got": "fee", "ok": False}
    assert oracle.generated == [3, 1]  # one generate call per prompt length
    assert oracle.training  # put back in training mode


def test_no_whole_example_means_no_accuracy() -> None:
    x, y = pairs([([2] * 9, [3, 4, 5, 6])])
    result = pairs_accuracy(Oracle({}), x, y, decode=str)
    assert result["examples"] == 0 and result["accuracy"] is None and result["skipped"]
