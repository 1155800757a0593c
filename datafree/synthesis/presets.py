"""Published data-free methods as presets of the one engine.

Each preset follows its paper's recipe (loss terms, schedule, generator), scaled to a
CPU-sized benchmark (batch size, iterations); every field can be overridden. References:
DeepInversion/ADI (Yin et al. 2020), ZSKD (Nayak et al. 2019), DAFL (Chen et al. 2019), DFAD (Fang et al. 2019),
ZSKT (Micaelli & Storkey 2019), CMI (Fang et al. 2021), Fast-DFKD (Fang et al. 2022).
"""

from __future__ import annotations

from typing import Any

from datafree.errors import DatafreeError
from datafree.synthesis.engine import SynthesisConfig

PRESETS: dict[str, dict[str, Any]] = {
    # pixels optimised against BN statistics + CE to sampled classes + image priors
    "deepinversion": dict(schedule="pool", generator="pixels", lr=0.1, iterations=200, batch_size=128,
                          bn=1.0, bn_first=10.0, oh=1.0, tv=1e-4 * 784, l2=1e-5, augment=True),
    # ZSKD (Nayak et al. 2019): pixels pushed towards soft targets drawn from a Dirichlet around each
    # class's similarity to the others (from the teacher's last layer), at temperature 20; needs no BN
    "zskd": dict(schedule="pool", generator="pixels", lr=0.01, iterations=200, batch_size=128,
                 oh=1.0, oh_temperature=20.0, dirichlet=1.0),
    # DeepInversion + adaptive competition: maximise teacher-student Jensen-Shannon divergence
    "adi": dict(schedule="pool", generator="pixels", lr=0.1, iterations=200, batch_size=128,
                bn=1.0, bn_first=10.0, oh=1.0, tv=1e-4 * 784, l2=1e-5, augment=True,
                adv=1.0, adv_kind="js", adv_temperature=3.0, student_steps=20),
    # generator trained jointly with the student: one-hot + activation + class balance
    "dafl": dict(schedule="online", generator="dcgan", output="tanh-bn", lr=0.2 * 1e-2, iterations=1, batch_size=256,
                 oh=1.0, act=0.1, ie=5.0, student_steps=1),
    # min-max on the L1 distance of logits; 5 student steps per generator step
    "dfad": dict(schedule="online", generator="dcgan", output="tanh-bn", lr=1e-3, iterations=1, batch_size=256,
                 adv=1.0, adv_kind="l1", student_steps=5),
    # maximise KL(teacher || student); 1 generator step : 10 student steps
    "zskt": dict(schedule="online", generator="dcgan", output="tanh-bn", lr=1e-3, iterations=1, batch_size=256,
                 adv=1.0, adv_kind="kl", student_steps=10),
    # fresh generator per round; BN + one-hot + agreement-masked adversarial + contrastive
    "cmi": dict(schedule="pool", generator="dcgan", lr=1e-3, iterations=200, batch_size=128, conditional=True,
                bn=1.0, oh=0.5, adv=0.5, adv_kind="cmi", contrastive=0.8, augment=True, student_steps=20),
    # Fast-DFKD: meta-learned generator initialisation, a few steps per batch, BN blending
    "fast": dict(schedule="meta", generator="dcgan", lr=5e-3, iterations=5, batch_size=256, conditional=True,
                 bn=10.0, bn_momentum=0.9, oh=0.5, adv=1.0, adv_kind="cmi", augment=True, meta_lr=0.5,
                 student_steps=5),
}
PRESETS["fast2"] = {**PRESETS["fast"], "iterations": 2}
PRESETS["fast5"] = dict(PRESETS["fast"])
PRESETS["fast10"] = {**PRESETS["fast"], "iterations": 10}

# KD temperature each paper distils with (Fast-DFKD uses T=20; the others the Hinton default)
KD_TEMPERATURE = {"fast": 20.0, "fast2": 20.0, "fast5": 20.0, "fast10": 20.0, "dafl": 4.0, "dfad": 1.0,
                  "zskt": 1.0, "cmi": 20.0, "deepinversion": 20.0, "adi": 20.0, "zskd": 20.0}


def preset(name: str, **overrides: Any) -> SynthesisConfig:
    """The config of a named method, with ``overrides`` applied."""
    if name not in PRESETS:
        raise DatafreeError(f"unknown method {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return SynthesisConfig.from_dict({**PRESETS[name], **overrides})
