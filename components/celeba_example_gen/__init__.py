"""A custom TFX ExampleGen for CelebA: face-centred 64x64 faces with landmarks, attributes and accounted rejects.

The component class and the artifact type are imported lazily so that `sources` (layout
checks, fingerprints) stays cheap to import for the CLI.
"""
from components.celeba_example_gen.sources import CelebADataError, check_input, input_fingerprint

__all__ = ["CelebADataError", "CelebAExampleGen", "ExampleRejects", "check_input", "input_fingerprint"]


def __getattr__(name):
    if name in ("CelebAExampleGen", "ExampleRejects"):
        from components.celeba_example_gen import component

        return getattr(component, name)
    raise AttributeError(name)
