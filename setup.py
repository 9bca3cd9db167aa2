"""Which packages the distribution holds: every package under ``neurosim/``, and the folders ``plugins/`` and
``models/`` (with any subpackages they grow) installed as ``neurosim.plugins`` and ``neurosim.models``.
Everything else is in ``pyproject.toml``."""
from setuptools import find_packages, setup

MAPPED = {"neurosim.plugins": "plugins", "neurosim.models": "models"}

packages = find_packages(include=["neurosim", "neurosim.*"])
for name, folder in MAPPED.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir={"neurosim": "neurosim", **MAPPED})
