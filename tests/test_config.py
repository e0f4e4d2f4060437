"""PmuConfig validation and presets (issue: foundation)."""

import pytest

from vpmu.config import PRESETS, PmuConfig, config_from_mapping, preset
from vpmu.errors import ConfigError


def test_presets_named_in_issue_exist() -> None:
    for name in ("intel-v1", "intel-v2", "intel-v5", "amd-k7", "amd-core", "amd-perfmon-v2"):
        assert preset(name).name == name


def test_intel_v2_shape() -> None:
    c = preset("intel-v2")
    assert (c.num_gp, c.num_fixed, c.gp_width, c.full_width_writes) == (4, 3, 48, True)
    assert c.pmc_indices == (0, 1, 2, 3, 32, 33, 34)
    assert c.global_ctrl_reset == 0xF


def test_amd_core_has_six_counters() -> None:
    assert preset("amd-core").num_gp == 6
    assert preset("amd-k7").num_gp == 4


def test_unknown_preset_names_it() -> None:
    with pytest.raises(ConfigError, match="'intel-v9'"):
        preset("intel-v9")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(vendor="intel", version=1, num_gp=4, num_fixed=2), "num_fixed"),
        (dict(vendor="intel", version=6, num_gp=4), "version"),
        (dict(vendor="intel", version=2, num_gp=9), "num_gp"),
        (dict(vendor="intel", version=4, num_gp=4, fixed_bitmap=1), "fixed_bitmap"),
        (dict(vendor="intel", version=2, num_gp=4, full_width_writes=True), "full_width_writes"),
        (dict(vendor="amd", version=1, num_gp=6), "num_gp"),
        (dict(vendor="amd", version=2, num_gp=6), "perfctr_core"),
        (dict(vendor="amd", version=1, num_gp=4, num_fixed=1), "num_fixed"),
        (dict(vendor="intel", version=2, num_gp=4, gp_width=1), "gp_width"),
        (dict(vendor="arm", version=1, num_gp=4), "vendor"),
    ],
)
def test_invalid_combinations_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        PmuConfig(**kwargs)
    assert err.value.field == field


def test_v5_bitmap_adds_fixed_counters() -> None:
    c = PmuConfig("intel", 5, 4, num_fixed=1, fixed_bitmap=0b100)
    assert c.fixed_indices == (0, 2)
    assert c.pmc_indices[-2:] == (32, 34)


def test_mapping_with_preset_and_override() -> None:
    c = config_from_mapping({"preset": "intel-v2", "gp_width": 8})
    assert c.gp_width == 8 and c.num_fixed == 3
    with pytest.raises(ConfigError, match="bogus"):
        config_from_mapping({"preset": "intel-v2", "bogus": 1})


def test_with_width_changes_all_counters() -> None:
    c = PRESETS["intel-v2"].with_width(4)
    assert c.gp_mask == 0xF and c.fixed_mask == 0xF
