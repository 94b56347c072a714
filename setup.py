"""The package list and data (everything else is in pyproject.toml). The design card keeps ``templates/`` and
``boards/`` at the top of the repository; they are installed inside the package as ``fpgagen.templates`` and
``fpgagen.boards`` (a package-dir mapping), so that a non-editable ``pip install .`` builds networks too
(fpgagen/resources.py finds them in either place). Packages under fpgagen/ are found, not listed."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["fpgagen", "fpgagen.*"]), "fpgagen.templates", "fpgagen.boards"],
    package_dir={"fpgagen.templates": "templates", "fpgagen.boards": "boards"},
    package_data={
        "fpgagen": ["checkpoints/*.pt", "checkpoints/*.json", "checkpoints/*.md"],
        "fpgagen.templates": ["hls/*.j2", "hls/*.h", "hls/*.tcl", "hls/*.cpp"],
        "fpgagen.boards": ["*/*", "*/**/*"],
    },
)
