"""The package list and data (everything else is in pyproject.toml). The design card keeps ``templates/`` and
``boards/`` at the top of the repository; they are installed inside the package as ``fpgagen.templates`` and
``fpgagen.boards`` (a package-dir mapping), so that a non-editable ``pip install .`` builds networks too
(fpgagen/resources.py finds them in either place). Packages under fpgagen/ are found, not listed."""

from setuptools import find_namespace_packages, find_packages, setup

# Every data folder is listed as a (namespace) package with its own files, as setuptools wants it: declaring
# them as data of a parent package made every build print a warning per folder.
DATA_DIRS = {"fpgagen.templates": "templates", "fpgagen.boards": "boards"}
data_packages = [f"{pkg}.{sub}" for pkg, root in DATA_DIRS.items()
                 for sub in find_namespace_packages(where=root, exclude=["*__pycache__*"])]

setup(
    packages=[*find_packages(include=["fpgagen", "fpgagen.*"]), "fpgagen.checkpoints", *DATA_DIRS, *data_packages],
    package_dir=DATA_DIRS,
    package_data={
        "fpgagen.checkpoints": ["*.pt", "*.json", "*.md"],
        **{pkg: ["*.j2", "*.h", "*.tcl", "*.cpp", "*.yaml", "*.ipynb", "*.jpg", "*.md"] for pkg in data_packages},
    },
)
