"""The setting types methods share: one modulation-window check and one 'modality=value' map type."""

from __future__ import annotations

import pytest

from mmviz.balancing import METHODS
from mmviz.balancing.settings import ModulationWindow, modality_map_fields, parse_modality_map
from mmviz.errors import ConfigError
from mmviz.training.build import check_run_config
from mmviz.training.config import build_run_config

WINDOWED = ("agm", "ogm_ge", "pmr")
MAPS = {"amd": "p_modality", "aux_loss": "weights", "mla": "fixed_weights"}
EXTRA = {"mla": ["model.fusion=shared_head"]}


def config_cls(method: str):
    return METHODS.get(method).config_cls


@pytest.mark.parametrize("method", WINDOWED)
def test_every_windowed_method_uses_the_one_window_check(method):
    cls = config_cls(method)
    assert issubclass(cls, ModulationWindow)
    with pytest.raises(ConfigError) as err:
        cls(modulation_starts=5, modulation_ends=2)
    assert str(err.value) == (
        f"The 'modulation_ends' parameter of {cls.title()} must be >= 'modulation_starts' (5). Got 2 instead."
    )
    cfg = cls(modulation_starts=2, modulation_ends=3)
    assert [cfg.active(e) for e in (1, 2, 3, 4)] == [False, True, True, False]


def test_exactly_the_modality_maps_are_declared_as_such():
    found = {entry.name: modality_map_fields(entry.config_cls()) for entry in METHODS}
    assert {name: fields for name, fields in found.items() if fields} == {m: [f] for m, f in MAPS.items()}


@pytest.mark.parametrize("method", MAPS)
def test_a_modality_map_parses_from_the_cli_and_refuses_bad_entries_in_one_sentence(method):
    field = MAPS[method]
    cls = config_cls(method)
    cfg = build_run_config("synthetic", method, [*EXTRA.get(method, []), f"method.{field}=b=0.5, a=0.25"])
    assert parse_modality_map(cfg.method_params, field) == {"b": 0.5, "a": 0.25}
    for bad in ("b", "b=x", "b=-1", "=1", "a=0.1,a=0.2"):
        with pytest.raises(ConfigError, match=rf"^The '{field}' parameter of {cls.title()} must hold entries"):
            cls(**{field: bad})
    unknown = build_run_config("synthetic", method, [*EXTRA.get(method, []), f"method.{field}=z=0.5"])
    with pytest.raises(ConfigError, match=rf"'{field}' parameter .* names modality 'z'.*Use 'a', 'b'"):
        check_run_config(unknown)
