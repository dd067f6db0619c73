"""Experiment specs: the deep merge of variants into the base, expansion into seeded job specs, and bad
variants named by variant and field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simtrain.experiments import ExperimentSpec, InvalidVariants, expand
from trainer_service.tracking import experiment_of

BASE = {
    "dataset": {"module": "text", "source": "tiny.txt", "options": {"val_fraction": 0.1}},
    "model": {"n_layer": 2, "n_head": 2, "n_embd": 32},
    "training": {"max_iters": 20, "batch_size": 4, "block_size": 16},
}


def test_expand_gives_each_variant_every_seed_in_order() -> None:
    spec = ExperimentSpec(
        name="t",
        base=BASE,
        variants={
            "char": {},
            "byte": {"dataset": {"tokenizer": "byte"}},
            "big": {"training": {"block_size": 32}},
        },
        seeds=2,
    )
    runs = expand(spec)
    assert [(r.variant, r.seed) for r in runs] == [
        ("char", 0),
        ("char", 1),
        ("byte", 0),
        ("byte", 1),
        ("big", 0),
        ("big", 1),
    ]
    assert [r.spec.training.seed for r in runs] == [0, 1] * 3
    assert runs[2].spec.dataset.tokenizer == "byte" and runs[0].spec.dataset.tokenizer == "char"
    assert runs[4].spec.training.block_size == 32 and runs[4].spec.training.max_iters == 20
    assert runs[2].spec.dataset.options == {"val_fraction": 0.1}  # the base's options kept


def test_a_variant_can_swap_explicit_sizes_for_a_preset_with_null() -> None:
    preset = {"model": {"n_layer": None, "n_head": None, "n_embd": None, "model_type": "gpt-nano"}}
    [run] = expand(ExperimentSpec(name="t", base=BASE, variants={"nano": preset}, seeds=[5]))
    assert run.spec.model.model_type == "gpt-nano" and run.seed == 5


def test_bad_variant_is_named_with_its_field() -> None:
    spec = ExperimentSpec(
        name="t",
        base=BASE,
        variants={"ok": {}, "bad": {"training": {"max_iters": 0}}, "typo": {"training": {"max_iter": 5}}},
    )
    with pytest.raises(InvalidVariants) as e:
        expand(spec)
    fields = {p.field for p in e.value.problems}
    assert fields == {"variants.bad.training.max_iters", "variants.typo.training.max_iter"}
    assert all(p.message.startswith(f"variant {p.variant}:") for p in e.value.problems)


def test_a_bad_base_value_is_named_in_the_base() -> None:
    base = BASE | {"training": {"max_iters": -1}}
    with pytest.raises(InvalidVariants) as e:
        expand(ExperimentSpec(name="t", base=base, variants={"a": {}}))
    assert [p.field for p in e.value.problems] == ["base.training.max_iters"]


def test_seeds_belong_to_the_experiment() -> None:
    spec = ExperimentSpec(name="t", base=BASE, variants={"a": {"training": {"seed": 3}}})
    with pytest.raises(InvalidVariants) as e:
        expand(spec)
    assert [p.field for p in e.value.problems] == ["variants.a.training.seed"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"base": BASE, "variants": {"a": {}}}, "name"),
        ({"name": "t", "base": BASE, "variants": {}}, "variants"),
        ({"name": "t", "base": BASE, "variants": {"a b": {}}}, "variants"),
        ({"name": "t", "base": BASE, "variants": {"a": {}}, "seeds": 0}, "seeds"),
        ({"name": "t", "base": BASE, "variants": {"a": {}}, "seeds": [1, 1]}, "seeds"),
        ({"name": "t", "base": BASE, "variants": {"a": {}}, "seeds": True}, "seeds"),
        ({"name": "t", "base": BASE, "variants": {"a": {}}, "extra": 1}, "extra"),
    ],
)
def test_bad_experiment_fields_are_named(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        ExperimentSpec.model_validate(body)
    assert field in {str(err["loc"][0]) for err in e.value.errors()}


def test_too_many_runs_is_refused() -> None:
    variants = {f"v{i}": {} for i in range(9)}
    with pytest.raises(InvalidVariants) as e:
        expand(ExperimentSpec(name="t", base=BASE, variants=variants, seeds=8))
    assert e.value.problems[0].field == "seeds"


def test_runs_are_named_and_tagged_with_their_experiment_and_variant() -> None:
    spec = ExperimentSpec(
        name="Does BPE help, really?",
        base={**BASE, "tags": ["mine"]},
        variants={"char": {}, "named": {"name": "my own name", "tags": ["x"]}},
        seeds=[7],
        tags=["ablation", "mine"],
    )
    char, named = expand(spec)
    assert char.spec.name == "Does BPE help, really? / char / seed 7"
    assert char.spec.tags == ["mine", "ablation", "experiment:Does-BPE-help-really?", "variant:char"]
    assert experiment_of(char.spec) == "Does-BPE-help-really?"  # its MLflow experiment
    assert named.spec.name == "my own name"
    assert named.spec.tags == ["x", "ablation", "mine", "experiment:Does-BPE-help-really?", "variant:named"]


def test_experiment_tags_are_checked_like_job_tags() -> None:
    with pytest.raises(ValidationError, match="without spaces"):
        ExperimentSpec(name="t", base=BASE, variants={"a": {}}, tags=["two words"])
    with pytest.raises(ValidationError):
        ExperimentSpec(name="t", base=BASE, variants={"a": {}}, tags=[f"t{i}" for i in range(15)])
