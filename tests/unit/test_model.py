"""The model against minGPT itself: a fixture from the real minGPT must load and give the same numbers."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from simtrain.model_presets import MODEL_PRESETS
from trainer_service import model as model_module
from trainer_service import ops
from trainer_service.model import GPT, GPTConfig, dropout, keep_mask

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "mingpt_gpt_nano.pt"


@pytest.fixture(scope="module")
def mingpt() -> dict:
    if not FIXTURE.exists():
        pytest.skip(f"minGPT fixture not found at {FIXTURE}")
    return torch.load(FIXTURE, weights_only=True)


def nano(dropout: float = 0.0, vocab_size: int = 65, block_size: int = 128) -> GPT:
    config = GPTConfig.from_preset(
        "gpt-nano", vocab_size, block_size, embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout
    )
    return GPT(config)


def layout(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in state_dict.items()]


def test_fixture_loads_strict_and_reproduces_mingpt_outputs(mingpt: dict) -> None:
    model = nano()
    model.load_state_dict(mingpt["state_dict"], strict=True)
    model.eval()
    logits, loss = model(mingpt["idx"], mingpt["targets"])
    torch.testing.assert_close(logits, mingpt["logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, mingpt["loss"], atol=1e-5, rtol=0)


def test_fresh_state_dict_has_mingpt_keys_order_and_shapes(mingpt: dict) -> None:
    ours = nano().state_dict()
    assert len(ours) == 44
    assert layout(ours) == layout(mingpt["state_dict"])


def test_saved_state_dict_round_trips_strict() -> None:
    torch.manual_seed(0)
    model = nano().eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    loaded = nano().eval()
    loaded.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    idx = torch.randint(0, 65, (2, 16))
    assert torch.equal(model(idx)[0], loaded(idx)[0])


@pytest.mark.parametrize("model_type", list(MODEL_PRESETS))
def test_every_preset_builds(model_type: str) -> None:
    config = GPTConfig.from_preset(model_type, vocab_size=50257, block_size=1024)
    assert (config.n_layer, config.n_head, config.n_embd) == MODEL_PRESETS[model_type]
    with torch.device("meta"):  # shapes only, no memory: gpt2-xl would be 1.5B real parameters
        model = GPT(config)
    assert len(model.transformer.h) == config.n_layer
    assert model.transformer.h[0].attn.c_attn.weight.shape == (3 * config.n_embd, config.n_embd)
    assert model.num_params() > 0


def test_param_counts_match_mingpt(mingpt: dict) -> None:
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig.from_preset("gpt2", vocab_size=50257, block_size=1024))
    assert f"{gpt2.num_params() / 1e6:.2f}M" == "124.44M"  # what minGPT prints for gpt2

    # minGPT counts transformer parameters only: not lm_head, and the attn.bias masks are buffers.
    expected = sum(
        v.numel()
        for k, v in mingpt["state_dict"].items()
        if k.startswith("transformer.") and not k.endswith(".attn.bias")
    )
    assert nano().num_params() == expected


def test_unknown_preset_and_bad_head_split_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model_type"):
        GPTConfig.from_preset("gpt5", vocab_size=65, block_size=16)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_layer=1, n_head=5, n_embd=48, vocab_size=65, block_size=16)


def test_init_follows_mingpt() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-mini", vocab_size=512, block_size=64))
    n_layer = model.config.n_layer
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(0.02 / (2 * n_layer) ** 0.5, rel=0.1), name
        elif name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            assert torch.all(p == 1), name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        else:
            assert p.std().item() == pytest.approx(0.02, rel=0.1), name


def test_weight_decay_only_on_linear_weights() -> None:
    model = nano()
    train_config = SimpleNamespace(learning_rate=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    optimizer = model.configure_optimizers(train_config)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in optimizer.param_groups)
    linear_weights = {f"{mn}.weight" for mn, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert decay == linear_weights and "lm_head.weight" in decay
    assert no_decay == set(names.values()) - linear_weights
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert optimizer.param_groups[0]["fused"]  # the CPU has a fused AdamW kernel since torch 2.4


def test_mlp_uses_tanh_gelu() -> None:
    # At init the activations are too small for the fixture to tell the tanh GELU from the erf one; here
    # the MLP is wired to pass x straight through its activation, where the two differ by up to ~1e-3.
    mlp = nano().transformer.h[0].mlp
    n = mlp.c_proj.out_features
    with torch.no_grad():
        for layer, eye in ((mlp.c_fc, torch.eye(4 * n, n)), (mlp.c_proj, torch.eye(n, 4 * n))):
            layer.weight.copy_(eye)
            layer.bias.zero_()
    x = torch.linspace(-4, 4, n).view(1, 1, n)
    new_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(mlp(x), new_gelu, atol=1e-6, rtol=0)


def test_dropout_only_in_train_mode() -> None:
    torch.manual_seed(0)
    model = nano(dropout=0.1)
    idx = torch.randint(0, 65, (2, 16))
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


def test_greedy_generate_is_deterministic_and_crops_context() -> None:
    torch.manual_seed(0)
    model = nano(block_size=8).eval()
    idx = torch.randint(0, 65, (2, 5))
    out = model.generate(idx, max_new_tokens=10)  # reaches 15 tokens: past block_size, so it must crop
    assert out.shape == (2, 15)
    assert torch.equal(out[:, :5], idx)
    assert torch.equal(out, model.generate(idx, max_new_tokens=10))
    sampled = model.generate(idx, max_new_tokens=4, do_sample=True, temperature=0.8, top_k=5)
    assert sampled.shape == (2, 9) and sampled.max() < 65


def test_forward_rejects_sequences_longer_than_block_size() -> None:
    model = nano(block_size=8)
    with pytest.raises(ValueError, match="block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_loss_is_the_mean_over_real_targets_and_zero_when_every_target_is_masked() -> None:
    torch.manual_seed(0)
    model = nano(block_size=8)
    x = torch.randint(0, 65, (2, 8))
    y = torch.randint(0, 65, (2, 8))
    y[0, :5] = -1
    logits, loss = model(x, y)
    real = y != -1
    expected = torch.nn.functional.cross_entropy(logits[real], y[real])
    torch.testing.assert_close(loss, expected)
    _, masked = model(x, torch.full_like(y, -1))
    masked.backward()
    assert masked.item() == 0.0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# What minGPT prints ("number of parameters: ...M") for each preset, with GPT-2's vocabulary and context
# for the big ones and chargpt's (65 characters, block 128) for the small ones.
MINGPT_PARAM_COUNTS = {
    "openai-gpt": (40478, 512, "116.54M"),  # GPT-1's own vocabulary and context
    "gpt2": (50257, 1024, "124.44M"),
    "gpt2-medium": (50257, 1024, "354.82M"),
    "gpt2-large": (50257, 1024, "774.03M"),
    "gpt2-xl": (50257, 1024, "1557.61M"),
    "gopher-44m": (50257, 1024, "51.48M"),
    "gpt-mini": (65, 128, "2.71M"),
    "gpt-micro": (65, 128, "0.82M"),
    "gpt-nano": (65, 128, "0.09M"),
}


def test_every_preset_has_its_mingpt_param_count() -> None:
    assert set(MINGPT_PARAM_COUNTS) == set(MODEL_PRESETS)
    for model_type, (vocab_size, block_size, printed) in MINGPT_PARAM_COUNTS.items():
        with torch.device("meta"):
            model = GPT(GPTConfig.from_preset(model_type, vocab_size, block_size))
        assert f"{model.num_params() / 1e6:.2f}M" == printed, model_type
    with torch.device("meta"):
        sort_demo = GPT(GPTConfig.from_preset("gpt-nano", vocab_size=3, block_size=11))
    assert sort_demo.num_params() == 85_584  # minGPT's sorting demo: "number of parameters: 0.09M"


def test_mingpt_style_config() -> None:
    """minGPT's way to make a model: the default config, then model_type (or sizes) and the data sizes."""
    config = GPT.get_default_config()
    assert (config.model_type, config.n_layer, config.embd_pdrop, config.attn_pdrop) == (None, None, 0.1, 0.1)
    config.model_type, config.vocab_size, config.block_size = "gpt-micro", 65, 32
    model = GPT(config)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (4, 4, 128)

    sized = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=10, block_size=8))
    assert len(sized.transformer.h) == 1
    with pytest.raises(ValueError, match="missing vocab_size, block_size"):
        GPT(GPTConfig(model_type="gpt-nano"))
    with pytest.raises(ValueError, match="not n_layer/n_head/n_embd"):
        GPTConfig(model_type="gpt-nano", n_layer=4, vocab_size=10, block_size=8)


def test_state_dict_is_minGPTs_and_nothing_else(mingpt: dict) -> None:
    """Strict loading both ways needs the same keys, shapes and buffers: the causal masks included."""
    ours = nano().state_dict()
    assert set(ours) == set(mingpt["state_dict"])
    for name, value in mingpt["state_dict"].items():
        if name.endswith(".attn.bias"):
            assert torch.equal(ours[name], value), name  # minGPT's lower-triangular mask, as it keeps it


def test_cpu_attention_with_dropout_matches_sdpa_when_nothing_drops() -> None:
    """The CPU path used while attention dropout is on computes the same attention as SDPA."""
    torch.manual_seed(0)
    attn = nano(dropout=0.1, block_size=16).transformer.h[0].attn
    qkv = torch.randn(2, 16, 3 * 48)
    explicit = attn._attention_with_cpu_dropout(qkv, p=0.0)
    torch.testing.assert_close(explicit, ops.sdpa_attention(qkv, 3), atol=1e-6, rtol=1e-5)


needs_attention_kernel = pytest.mark.skipif(
    ops.library("attention") is None, reason="no C compiler: attention is SDPA's"
)


@needs_attention_kernel
@pytest.mark.parametrize(
    "B, T, n_head, head_size",
    [(2, 1, 1, 16), (3, 7, 2, 16), (2, 37, 3, 24), (4, 128, 6, 32), (2, 130, 2, 64), (1, 20, 1, 5)],
)
def test_attention_kernel_is_as_accurate_as_sdpa(B: int, T: int, n_head: int, head_size: int) -> None:
    """Output and gradient against SDPA in float64, no further off than SDPA's own float32 (with slack)."""
    torch.manual_seed(0)
    exact = torch.randn(B, T, 3 * n_head * head_size, dtype=torch.float64, requires_grad=True)
    reference = ops.sdpa_attention(exact, n_head)
    grad = torch.randn_like(reference)
    (reference_dqkv,) = torch.autograd.grad(reference, exact, grad)
    qkv = exact.detach().float().requires_grad_()
    ours = ops.attention_kernel(qkv, n_head)
    assert type(ours.grad_fn).__name__ == "_CausalAttentionBackward"  # the kernel, not the fallback
    (dqkv,) = torch.autograd.grad(ours, qkv, grad.float())
    torch.testing.assert_close(ours.double(), reference, atol=3e-6, rtol=0)
    torch.testing.assert_close(dqkv.double(), reference_dqkv, atol=1e-5, rtol=0)
    with torch.no_grad():  # inference keeps no row statistics but computes the same
        assert torch.equal(ops.attention_kernel(qkv, n_head), ours.detach())


@needs_attention_kernel
def test_attention_kernel_is_thread_count_independent() -> None:
    torch.manual_seed(0)
    qkv = torch.randn(5, 70, 3 * 4 * 16, requires_grad=True)
    grad = torch.randn(5, 70, 4 * 16)

    def run() -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)
        y, dropped = ops.attention_kernel(qkv, 4), ops.attention_kernel(qkv, 4, dropout_p=0.2)
        return y, dropped, *torch.autograd.grad((y, dropped), qkv, (grad, grad))

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, run(), strict=True))


def dropout_mask(seed: int, B: int, T: int, n_head: int, p: float) -> tuple[torch.Tensor, float]:
    """The kernel's attention-dropout mask ``[B, n_head, T, T]`` (1 = kept) for torch seed ``seed``, and the
    kept share, read off its output: equal scores (q = 0) and one-hot values (v_j = e_j) give
    ``y_i[j] = mask_ij / (kept * (i + 1))``."""
    qkv = torch.zeros(B, T, 3, n_head, T)
    qkv[:, :, 2] = torch.eye(T).unsqueeze(1)  # v of position t: e_t, in every head
    torch.manual_seed(seed)
    y = ops.attention_kernel(qkv.view(B, T, -1), n_head, dropout_p=p).view(B, T, n_head, T).transpose(1, 2)
    kept = 1.0 - round(p * 2**32) / 2**32
    return (y * kept * torch.arange(1, T + 1).view(1, 1, T, 1)).round(), kept


@needs_attention_kernel
def test_attention_dropout_keeps_the_right_share_with_masks_of_their_own() -> None:
    mask, _ = dropout_mask(0, B=32, T=16, n_head=4, p=0.1)
    causal = torch.tril(torch.ones(16, 16, dtype=torch.bool))
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and not mask[..., ~causal].any()
    assert mask[..., causal].mean().item() == pytest.approx(0.9, abs=0.01)  # of 17,408 draws
    assert not torch.equal(mask[0, 0], mask[0, 1]) and not torch.equal(mask[0, 0], mask[1, 0])
    assert torch.equal(mask, dropout_mask(0, B=32, T=16, n_head=4, p=0.1)[0])  # the seed decides it
    assert not torch.equal(mask, dropout_mask(1, B=32, T=16, n_head=4, p=0.1)[0])


@needs_attention_kernel
def test_attention_dropout_gradient_is_that_of_minGPTs_dropout() -> None:
    """With the same torch seed the mask is the same whatever the data: minGPT's attention in float64 with
    that mask (dropout on the probabilities, scaled by 1 / kept) gives the same output and gradient."""
    B, T, n_head, head_size = 3, 16, 2, 16
    mask, kept = dropout_mask(5, B, T, n_head, p=0.3)
    torch.manual_seed(0)
    exact = torch.randn(B, T, 3 * n_head * head_size, dtype=torch.float64, requires_grad=True)
    q, k, v = ops.split_heads(exact, n_head)
    scores = (q @ k.transpose(-2, -1)) / head_size**0.5
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    att = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    reference = ops.merge_heads((att * mask / kept) @ v)
    grad = torch.randn_like(reference)
    (reference_dqkv,) = torch.autograd.grad(reference, exact, grad)
    qkv = exact.detach().float().requires_grad_()
    torch.manual_seed(5)
    ours = ops.attention_kernel(qkv, n_head, dropout_p=0.3)
    (dqkv,) = torch.autograd.grad(ours, qkv, grad.float())
    torch.testing.assert_close(ours.double(), reference, atol=3e-6, rtol=0)
    torch.testing.assert_close(dqkv.double(), reference_dqkv, atol=1e-5, rtol=0)


def test_attention_takes_the_kernel_where_it_applies_and_otherwise_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model's three attention paths: our kernel; on CPU with dropout, the mask-folding path; SDPA."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 9, 3 * 2 * 8)
    assert not ops.attention_kernel_applies(qkv.double())
    assert not ops.attention_kernel_applies(qkv, dropout_p=1.0)
    assert not ops.attention_kernel_applies(qkv.transpose(0, 1))  # not contiguous
    attn = nano(dropout=0.1, block_size=16).transformer.h[0].attn
    taken: list[str] = []

    def spy(name: str, path: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda *args: taken.append(name) or path(*args)

    monkeypatch.setattr(model_module, "attention_kernel", spy("kernel", ops.attention_kernel))
    monkeypatch.setattr(model_module, "sdpa_attention", spy("sdpa", ops.sdpa_attention))
    folding = spy("mask-folding", attn._attention_with_cpu_dropout)
    monkeypatch.setattr(attn, "_attention_with_cpu_dropout", folding)
    x = torch.randn(2, 16, 48)
    attn.eval()(x), attn.train()(x)  # no dropout, then attention dropout 0.1
    if ops.library("attention") is not None:
        assert taken == ["kernel", "kernel"]
    monkeypatch.setattr(ops.shutil, "which", lambda name: None)  # no C compiler
    ops.library.cache_clear()
    try:
        taken.clear()
        attn.eval()(x), attn.train()(x)
        assert taken == ["sdpa", "mask-folding"]
    finally:
        ops.library.cache_clear()  # the next caller builds the kernels again


def test_cpu_dropout_keeps_the_distribution_and_its_gradient_mask() -> None:
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    share = 1 - 6554 / 65536  # p = 0.1 rounded to 16 bits: 0.1000061
    assert kept.float().mean().item() == pytest.approx(share, abs=0.002)
    assert torch.all(y[kept].detach() == torch.tensor(1 / share))  # scaled by the exact kept share
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # gradients flow exactly where values were kept
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0, training=True) is x
    assert torch.all(dropout(x, 1.0, training=True) == 0)

    mask, kept_share = keep_mask(torch.Size([3, 5, 7]), 0.25)  # odd sizes: not a multiple of 4 draws
    assert mask.shape == (3, 5, 7) and mask.dtype == torch.bool and kept_share == 0.75
    for p in (0.02, 0.5, 0.9):
        assert keep_mask(torch.Size([400_000]), p)[0].float().mean().item() == pytest.approx(1 - p, abs=0.003)

    torch.manual_seed(1)
    a = dropout(torch.ones(64), 0.5, True)
    torch.manual_seed(1)
    assert torch.equal(a, dropout(torch.ones(64), 0.5, True))  # the torch RNG decides: checkpoints resume it


def test_flops_per_token_is_palms_estimate() -> None:
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig.from_preset("gpt2", vocab_size=50257, block_size=1024))
    matmul_weights = 12 * (768 * 2304 + 768 * 768 + 768 * 3072 + 3072 * 768) + 768 * 50257  # lm_head untied
    assert gpt2.flops_per_token() == 6 * matmul_weights + 12 * 12 * 768 * 1024 == 854_438_400
    assert gpt2.flops_per_token(256) < gpt2.flops_per_token()


def new_gelu(x: torch.Tensor) -> torch.Tensor:
    """minGPT's NewGELU, op by op."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def test_compiled_gelu_is_as_accurate_as_atens() -> None:
    """Forward and backward against minGPT's formula in float64, no further off than ATen's float32 GELU."""
    if ops.library("gelu") is None:
        pytest.skip("no C compiler: gelu is F.gelu(approximate='tanh')")
    torch.manual_seed(0)
    x = torch.cat([torch.linspace(-12, 12, 10_001), 3 * torch.randn(100_000)]).requires_grad_()
    grad = torch.randn_like(x)
    ours = ops.gelu(x)
    assert "TanhGELU" in type(ours.grad_fn).__name__  # the kernel, not the fallback
    aten = torch.nn.functional.gelu(x, approximate="tanh")
    exact = x.detach().double().requires_grad_()
    reference = new_gelu(exact)
    (reference_dx,) = torch.autograd.grad(reference, exact, grad.double())
    for y in (ours, aten):
        (dx,) = torch.autograd.grad(y, x, grad)
        torch.testing.assert_close(y.double(), reference, atol=1e-6, rtol=0)
        torch.testing.assert_close(dx.double(), reference_dx, atol=1e-5, rtol=0)


def test_compiled_gelu_is_thread_count_independent_and_leaves_denormals_alone() -> None:
    if ops.library("gelu") is None:
        pytest.skip("no C compiler")
    x = torch.randn(1_000_003)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.gelu(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, ops.gelu(x))  # bit-exact whatever the split: resumes stay bit-identical
    assert torch.equal(one[1:], ops.gelu(x[1:]))  # and wherever the tensor starts
    assert (torch.tensor(1e-40) * 1.0).item() != 0.0  # loading it switched on no flush-to-zero


def test_gelu_falls_back_to_aten_where_the_kernel_does_not_apply() -> None:
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.gelu, (x,))
    torch.testing.assert_close(ops.gelu(x), new_gelu(x))
    strided = torch.randn(6, 4).t().requires_grad_()  # not contiguous: ATen's kernel
    y = ops.gelu(strided)
    assert type(y.grad_fn).__name__ == "GeluBackward0"
    torch.testing.assert_close(y, new_gelu(strided), atol=1e-6, rtol=1e-6)


def test_without_a_c_compiler_gelu_is_atens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops.shutil, "which", lambda name: None)
    ops.library.cache_clear()
    try:
        assert ops.library("gelu") is None
        y = ops.gelu(torch.randn(64, requires_grad=True))
        assert type(y.grad_fn).__name__ == "GeluBackward0"
    finally:
        ops.library.cache_clear()  # the next caller builds the kernel again
