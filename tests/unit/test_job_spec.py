"""The job spec contract: what validates, what is refused, and with which field named."""

import json

import pytest
from pydantic import ValidationError

from simtrain.jobs import JobSpec

MINIMAL = {"dataset": {"module": "text", "source": "tiny.txt"}}


def error_fields(spec: dict) -> set[str]:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(spec)
    return {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


def test_minimal_spec_gets_minGPT_like_defaults():
    spec = JobSpec.model_validate(MINIMAL)
    assert spec.model.sizes() == (3, 3, 48)
    assert spec.training.max_iters == 300
    assert spec.data_service is None


def test_design_example_validates():
    spec = JobSpec.model_validate(
        {
            "dataset": {
                "module": "text",
                "source": "tiny.txt",
                "tokenizer": "char",
                "packing": "stream",
                "options": {},
            },
            "data_service": "127.0.0.1:50051",
            "model": {"model_type": "gpt-nano"},
            "training": {
                "max_iters": 300,
                "batch_size": 32,
                "block_size": 64,
                "learning_rate": 5e-4,
                "seed": 0,
                "eval_interval": 100,
            },
            "checks": {},
        }
    )
    assert spec.data_service == "127.0.0.1:50051"


def test_explicit_sizes():
    spec = JobSpec.model_validate(MINIMAL | {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32}})
    assert spec.model.sizes() == (2, 2, 32)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"training": {"max_iters": 0}}, "training.max_iters"),
        ({"training": {"learning_rate": -1}}, "training.learning_rate"),
        ({"training": {"max_itres": 5}}, "training.max_itres"),
        ({"training": {"precision": "fp16"}}, "training.precision"),
        ({"model": {"model_type": "gpt-huge"}}, "model.model_type"),
        ({"model": {"model_type": "gpt-nano", "n_layer": 2}}, "model"),
        ({"model": {"n_layer": 2, "n_head": 3, "n_embd": 32}}, "model"),
        ({"dataset": {"module": "text"}}, "dataset"),
        ({"dataset": {"id": "abc", "module": "text", "source": "x"}}, "dataset"),
        ({"data_service": "not an address"}, "data_service"),
        ({"surprise": 1}, "surprise"),
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "   "}, "name"),
        ({"tags": ["two words"]}, "tags.0"),
        ({"tags": ["ok", "a,b"]}, "tags.1"),
        ({"tags": [""]}, "tags.0"),
        ({"tags": ["x" * 65]}, "tags.0"),
        ({"tags": [f"t{i}" for i in range(17)]}, "tags"),
        ({"tags": "one"}, "tags"),
        ({"init_from": "Not-An-Id"}, "init_from"),
        ({"forked_from": "g" * 32}, "forked_from"),
    ],
)
def test_invalid_specs_name_the_field(change: dict, field: str):
    assert field in error_fields(MINIMAL | change)


def test_names_and_tags_are_kept_and_a_repeated_tag_counts_once():
    spec = JobSpec.model_validate(MINIMAL | {"name": "lr 3e-4, warm-up", "tags": ["lr", "v2", "lr", "é"]})
    assert spec.name == "lr 3e-4, warm-up" and spec.tags == ["lr", "v2", "é"]
    assert JobSpec.model_validate(MINIMAL).tags == [] and JobSpec.model_validate(MINIMAL).name is None
    assert len(JobSpec.model_validate(MINIMAL | {"tags": [f"t{i}" for i in range(16)]}).tags) == 16


def test_missing_dataset_is_named():
    assert "dataset" in error_fields({})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"training": {"grad_norm_clip": Infinity}}', "training.grad_norm_clip"),
        ('{"training": {"learning_rate": NaN}}', "training.learning_rate"),
        ('{"training": {"betas": [0.9, -Infinity]}}', "training.betas"),
        ('{"checks": {"gap_warn": Infinity}}', "checks.gap_warn"),
        (
            '{"dataset": {"module": "text", "source": "tiny.txt", "options": {"val_fraction": NaN}}}',
            "dataset.options.val_fraction",
        ),
    ],
)
def test_non_finite_numbers_are_refused(body: str, field: str):
    """Stored, they would come back as null and the record could not be read (json.dumps keeps them)."""
    spec = MINIMAL | json.loads(body)
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate_json(json.dumps(spec))
    errors = {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}
    assert "not a finite number" in errors[field]


@pytest.mark.parametrize(
    "change",
    [
        {"training": {"max_iters": True}},
        {"training": {"learning_rate": False}},
        {"training": {"betas": [True, 0.9]}},
        {"model": {"n_layer": True, "n_head": 1, "n_embd": 8}},
        {"checks": {"overfit_steps": True}},
    ],
)
def test_booleans_are_not_numbers(change: dict):
    (section,) = change
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(MINIMAL | change)
    (error,) = info.value.errors()
    assert error["loc"][0] == section and "not true or false" in error["msg"]


def test_booleans_stay_allowed_where_asked():
    spec = JobSpec.model_validate(MINIMAL | {"training": {"compile": True}})
    assert spec.training.compile is True
    options = {"lowercase": True, "n": 3, "share": 0.5, "name": "x"}
    spec = JobSpec.model_validate({"dataset": MINIMAL["dataset"] | {"options": options}})
    assert spec.dataset.options == options
