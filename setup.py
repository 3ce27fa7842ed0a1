"""Build the native core.

structgen's Cython lives in ``native/`` and is built as ONE extension module,
``structgen._native``, from ``native/_native.pyx``, which ``include``s the ``.pxi`` files beside it.
One module means one C namespace (like lxml): the files share typedefs and inline helpers without
``.pxd`` plumbing, and Cython never has to guess a package path from the ``native/`` folder name,
which breaks ``cimport`` between separately built modules. Works with ``pip install .`` and
``pip install -e .`` alike. Set ``STRUCTGEN_DEBUG=1`` to build with bounds checks on.
"""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("STRUCTGEN_DEBUG") == "1"

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

extensions = [
    Extension(
        "structgen._native",
        ["native/_native.pyx"],
        include_dirs=[numpy.get_include()],
        # OpenMP spreads a batch of mask fills over cores inside one GIL-free call
        extra_compile_args=(["-O0", "-g"] if DEBUG else ["-O3"]) + ["-fopenmp"],
        extra_link_args=["-fopenmp"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            include_path=["native"]))
