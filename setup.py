"""Builds the AMI parser's compiled fast path; everything else is in pyproject.toml.

CALLCENTER_NO_EXTENSIONS=1 at install time skips it (the pure Python parser then runs
alone, as on a machine without a C compiler).
"""

import os

from setuptools import Extension, setup

extensions = []
if not os.environ.get("CALLCENTER_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    extensions = cythonize(
        [Extension("callcenter.ami._speedups", ["callcenter/ami/_speedups.pyx"])],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=extensions)
