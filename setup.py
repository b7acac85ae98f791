"""genpipe: TFX pipelines for generative models."""
import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _requirements():
    """Top-level requirements; exact pins for installs live in requirements.lock."""
    lines = (HERE / "requirements.in").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setuptools.setup(
    name="genpipe",
    version="0.1.0",
    description="Production TFX pipelines for generative deep learning in TensorFlow.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=setuptools.find_packages(include=["pipelines*", "components*", "trainer_modules*", "serving*"]),
    install_requires=[r for r in _requirements() if not r.startswith("pytest")],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["genpipe=pipelines.cli:main"]},
)
