"""The method registries: one record per method, and what 'adding a method' takes (docs/methods.md)."""

from __future__ import annotations

import pytest

from datafree.bench import parse_source
from datafree.cli import main
from datafree.condense import METHODS as CONDENSATION
from datafree.condense import CondenseMethod, method_config, register
from datafree.condense.base import Condenser
from datafree.errors import DatafreeError
from datafree.synthesis import preset
from datafree.synthesis.presets import METHODS as SYNTHESIS
from datafree.synthesis.presets import SynthesisMethod
from datafree.synthesis.presets import register as register_synthesis


class PixelMeans(Condenser):
    """The docs' example method: each class's images move towards the mean of a fresh real batch of that class."""

    def step(self) -> dict[str, float]:
        c, ipc = self.spec.num_classes, self.config.ipc
        target = self.real_batch(self.config.batch_real).mean(1)  # (C, *shape)
        loss = ((self.images.view(c, ipc, *self.spec.shape).mean(1) - target) ** 2).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}


@pytest.fixture
def pixel_means():
    record = register(CondenseMethod("pixel-means", PixelMeans, {"iterations": 5, "lr_img": 0.1}))
    yield record
    del CONDENSATION[record.name]


def test_a_registered_condensation_method_is_everywhere(pixel_means, fmnist_root, tmp_path, capsys):
    """One class and one registration line: the CLI's choices, configs, suites' sources and the runner all see it."""
    assert method_config("pixel-means", ipc=2).iterations == 5
    assert parse_source("cond:pixel-means:2:hard").method == "pixel-means"
    with pytest.raises(SystemExit):
        main(["condense", "--help"])
    assert "pixel-means" in capsys.readouterr().out
    out = tmp_path / "set"
    assert main(["condense", "--method", "pixel-means", "--ipc", "2", "--set", "batch_real=8", "--data-root",
                 str(fmnist_root), "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    assert (out / "manifest.json").is_file()
    with pytest.raises(DatafreeError, match="already registered"):
        register(pixel_means)


def test_a_registered_synthesis_method_is_everywhere():
    record = register_synthesis(SynthesisMethod("deepinversion-long", {**SYNTHESIS["deepinversion"].preset,
                                                                        "iterations": 2000}, kd_temperature=20.0))
    try:
        assert preset("deepinversion-long").iterations == 2000 and record.needs_batchnorm and not record.runs_live
        assert parse_source("df:deepinversion-long").method == "deepinversion-long"
        from datafree.api import kd_temperature

        assert kd_temperature("deepinversion-long") == 20.0
    finally:
        del SYNTHESIS[record.name]
    with pytest.raises(DatafreeError):  # a wrong field fails when it is registered, not when it is first run
        register_synthesis(SynthesisMethod("broken", {"no_such_field": 1}))
    assert "broken" not in SYNTHESIS


def test_batchnorm_and_live_flags_come_from_the_configs():
    assert {n for n, m in SYNTHESIS.items() if m.needs_batchnorm} == {"deepinversion", "adi", "cmi", "fast", "fast2",
                                                                       "fast5", "fast10", "nayer"}
    assert {n for n, m in SYNTHESIS.items() if m.runs_live} == {"adi", "dafl", "dfad", "zskt", "cmi", "fast", "fast2",
                                                                 "fast5", "fast10", "nayer"}
    assert [n for n, m in CONDENSATION.items() if not m.reads_data] == ["teacher"]
    assert CONDENSATION["teacher"].needs_batchnorm
    # the teacher-only method is SRe2L's recovery (CE + bn x BN statistics): no copy of DeepInversion's weights
    teacher = method_config("teacher")
    assert (teacher.bn, teacher.bn_first, teacher.lr_img) == (0.01, 10.0, 0.25)
    assert (teacher.oh, teacher.tv, teacher.l2) == (1.0, 0.0, 0.0)  # CE only: no image priors
