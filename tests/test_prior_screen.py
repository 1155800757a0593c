"""benchmarks.prior_screen: which synthesis a screen's rows share."""
from benchmarks.datafree_kd import method_recipe
from benchmarks.prior_screen import screened_synthesis
from datafree.synthesis import METHODS


def test_a_variant_screens_its_own_synthesis_not_zskd():
    name, base, words = screened_synthesis("fast5-stored-ngf32-inherit", {"augment": True})
    assert (name, base) == method_recipe("fast5-stored-ngf32-inherit")[:2]
    assert name == "fast5" and base["ngf"] == 32 and base["adv"] == 0.0 and "augment" not in base
    assert "fast5-stored-ngf32-inherit" in words


def test_without_a_variant_it_is_zskd_at_its_bench_settings_under_the_base():
    name, base, _ = screened_synthesis(None, {"iterations": 7, "tv": 0.5})
    assert name == "zskd"
    assert base == {**METHODS["zskd"].bench, "iterations": 7, "tv": 0.5}  # the base wins over the bench settings
