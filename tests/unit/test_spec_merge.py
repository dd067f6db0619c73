"""The deep merge of variants and forks: mappings merge key by key, anything else replaces, None removes,
the base is left alone."""

from __future__ import annotations

from simtrain.spec_merge import deep_merge


def test_mappings_merge_other_values_replace_and_none_removes():
    base = {"training": {"max_iters": 300, "betas": [0.9, 0.95]}, "tags": ["a", "b"], "name": "x"}
    changes = {"training": {"max_iters": 500, "betas": [0.8, 0.9]}, "tags": ["c"], "name": None}
    assert deep_merge(base, changes) == {"training": {"max_iters": 500, "betas": [0.8, 0.9]}, "tags": ["c"]}


def test_nested_keys_merge_deeply_and_new_keys_are_added():
    base = {"dataset": {"options": {"val_fraction": 0.1, "separator": "\n"}, "source": "a.txt"}}
    merged = deep_merge(base, {"dataset": {"options": {"val_fraction": 0.2}}, "checks": {"gap_warn": 1.0}})
    assert merged == {
        "dataset": {"options": {"val_fraction": 0.2, "separator": "\n"}, "source": "a.txt"},
        "checks": {"gap_warn": 1.0},
    }


def test_a_mapping_over_a_plain_value_replaces_it_and_the_base_is_not_changed():
    base = {"data_service": None, "model": {"model_type": "gpt-nano", "n_layer": 3}}
    merged = deep_merge(
        base, {"data_service": {"host": "x"}, "model": {"model_type": "gpt-micro", "n_layer": None}}
    )
    assert merged == {"data_service": {"host": "x"}, "model": {"model_type": "gpt-micro"}}
    assert base == {"data_service": None, "model": {"model_type": "gpt-nano", "n_layer": 3}}
    assert deep_merge(base, {}) == base
