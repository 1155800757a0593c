"""Data-free synthesis: generators, the composable engine, and the published methods as presets."""

from datafree.synthesis.engine import LiveStream, SynthesisConfig, Synthesizer
from datafree.synthesis.generators import Generator, PixelGenerator
from datafree.synthesis.presets import KD_TEMPERATURE, METHODS, PRESETS, SynthesisMethod, preset, register

__all__ = ["KD_TEMPERATURE", "METHODS", "PRESETS", "Generator", "LiveStream", "PixelGenerator", "SynthesisConfig",
           "SynthesisMethod", "Synthesizer", "preset", "register"]
