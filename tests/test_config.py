"""TrainConfig's fields carry their options: the flags, the config-file checks and the
experiments' options all come from them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from genen_dgl.config import CHOICES, OPTIONS, SAMPLER_NAMES, TrainConfig, build_parser, checked_options, from_args
from genen_dgl.errors import InputError
from genen_dgl.experiments.__main__ import build_parser as experiments_parser
from genen_dgl.sampling import FULL_GRAPH, SAMPLERS


def test_every_field_is_an_option_with_its_flag():
    actions = {a.dest: a for a in build_parser("x", "")._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["option"] is OPTIONS[f.name]
        assert f.name in actions and actions[f.name].default is None, f.name
    assert actions["task_type"].option_strings == ["--type"]
    assert CHOICES["sampler"] == SAMPLER_NAMES


def test_the_sampler_names_are_the_registry_and_full_graph_training():
    assert set(SAMPLER_NAMES) == set(SAMPLERS) | {FULL_GRAPH}


def test_the_experiments_pass_options_with_the_fields_choices():
    table = experiments_parser()._subparsers._group_actions[0].choices["masking"]
    actions = {a.dest: a for a in table._actions}
    assert tuple(actions["sampler"].choices) == SAMPLER_NAMES and tuple(actions["model"].choices) == CHOICES["model"]
    assert actions["epochs"].type is int and actions["epochs"].help == OPTIONS["epochs"].help


def test_fanout_rel_from_repeated_flags_and_a_config_file_is_one_mapping(tmp_path):
    """Repeated flags add up; as for every option, the flags replace the config file's value."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"fanout_rel": ["interacts=5,5,5", "is_a=2,2,2"]}))
    parser = build_parser("x", "")
    assert from_args(parser.parse_args(["--config", str(config)])).fanout_rel == {"interacts": [5, 5, 5],
                                                                                  "is_a": [2, 2, 2]}
    args = parser.parse_args(["--config", str(config), "--fanout-rel", "is_a=1,1,1", "--fanout-rel",
                              "annotates=-1,3,3", "--fanout-rel", "is_a=4,4,4"])
    assert from_args(args).resolved().fanout_rel == {"is_a": [4, 4, 4], "annotates": [-1, 3, 3]}


@pytest.mark.parametrize("values, message", [
    ({"fanouts": 5}, "fanouts = 5: expected integers >= 1 (or -1: every neighbour)"),
    ({"fanouts": [5, True]}, "fanouts = [5, True]: expected integers"),
    ({"fanout_rel": {"interacts": 5}}, "fanout_rel interacts = 5: expected integers"),
    ({"hidden": [16, 32]}, "hidden = [16, 32]: expected an integer >= 1"),
])
def test_config_file_values_of_the_wrong_shape_are_refused(values, message):
    with pytest.raises(InputError, match=re.escape(message)):
        checked_options(values, Path("c.yaml"))


def test_none_is_refused_where_an_option_has_a_default():
    with pytest.raises(InputError, match="hidden = None: expected an integer >= 1"):
        TrainConfig(hidden=None).resolved()
    assert TrainConfig(layers=None).resolved().layers == 3


def test_a_run_directorys_config_yaml_reads_back_as_the_same_config():
    config = TrainConfig(fanout_rel={"interacts": [5, 5]}, model="gat", hidden=64).resolved()
    assert TrainConfig(**checked_options(yaml.safe_load(config.to_yaml()), Path("config.yaml"))) == config
