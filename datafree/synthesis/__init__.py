"""Data-free synthesis: generators, the composable engine, and the published methods as presets."""

from datafree.synthesis.engine import LiveStream, SynthesisConfig, Synthesizer
from datafree.synthesis.generators import (
    GENERATORS,
    DCGANConfig,
    Generator,
    NoisyLayerConfig,
    NoisyLayerGenerator,
    PixelConfig,
    PixelGenerator,
)
from datafree.synthesis.presets import KD_TEMPERATURE, METHODS, PRESETS, SynthesisMethod, preset, register
from datafree.synthesis.procedural import dead_leaves

__all__ = ["GENERATORS", "KD_TEMPERATURE", "METHODS", "PRESETS", "DCGANConfig", "Generator", "LiveStream",
           "NoisyLayerConfig", "NoisyLayerGenerator", "PixelConfig", "PixelGenerator", "SynthesisConfig", "SynthesisMethod",
           "Synthesizer", "dead_leaves", "preset", "register"]
