"""Packaging beyond pyproject.toml: the repository's top-level ``templates/`` and
``derivations/`` ship inside the package.

The project keeps both folders at the top level of the repository; a wheel must carry them
or an installed ``symbptt`` has no templates and no built-in cells. They are mapped to the
packages ``symbptt.templates`` and ``symbptt.derivations`` (``package_dir``), so the wheel
holds ``symbptt/templates/*.j2`` and ``symbptt/derivations/*.py``, which
:mod:`symbptt.paths` finds with :mod:`importlib.resources`. Every other setting is in
pyproject.toml. Subpackages (``symbptt.kernels``, ``symbptt.grading``, a future
``symbptt.torch``) are found automatically.
"""

from setuptools import find_packages, setup

#: Package name in the wheel -> folder in the repository.
DATA_FOLDERS = {"symbptt.templates": "templates", "symbptt.derivations": "derivations"}

setup(
    packages=find_packages(include=["symbptt", "symbptt.*"]) + list(DATA_FOLDERS),
    package_dir=DATA_FOLDERS,
    package_data={"symbptt": ["py.typed"], "symbptt.templates": ["*.j2"],
                  "symbptt.derivations": ["*.py"]},
)
