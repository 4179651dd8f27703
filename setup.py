"""Package discovery from the folders: nothing is listed by hand, so a new subfolder cannot drop out of
the wheel. neuroscope/ is the root package; the top-level core/, cache/ and tui/ folders are its
subpackages neuroscope.core, neuroscope.cache and neuroscope.tui (see pyproject.toml for the rest)."""

from setuptools import find_namespace_packages, setup

SUBPACKAGES = ("core", "cache", "tui")
found = find_namespace_packages(
    include=[f"{root}*" for root in ("neuroscope", *SUBPACKAGES)], exclude=["*__pycache__*"]
)
packages = [p if p.split(".")[0] == "neuroscope" else f"neuroscope.{p}" for p in found]

setup(packages=packages, package_dir={"neuroscope": "neuroscope", **{f"neuroscope.{r}": r for r in SUBPACKAGES}})
