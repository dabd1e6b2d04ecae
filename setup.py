"""Build shardpay's compiled hot paths (Cython) where a C compiler is present.

Every ``shardpay/_NAME.pyx`` becomes the extension ``shardpay._NAME``; each has a
pure-Python twin, ``shardpay/_NAME_py.py``, with the same interface and the
same results, which the package uses when the extension is missing. So
``pip install .`` never fails for want of a compiler: a build that cannot
compile says so in one warning and installs pure Python. ``SHARDPAY_NO_EXTENSIONS=1``
skips the build on purpose. The metadata lives in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


class OptionalBuildExt(build_ext):
    """``build_ext`` that warns and goes on, pure Python, when an extension cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # noqa: BLE001 - no compiler, no headers: any of many errors
            _warn(f"compiled extensions not built ({err}); shardpay installs as pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001 - as above, for one extension
            _warn(f"{ext.name} not built ({err}); its pure-Python twin is used")


def _warn(message: str) -> None:
    print(f"shardpay build: WARNING: {message}", file=sys.stderr)


def _extensions() -> list[Extension]:
    if os.environ.get("SHARDPAY_NO_EXTENSIONS"):
        return []
    sources = sorted((HERE / "shardpay").glob("_*.pyx"))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not installed; shardpay installs as pure Python")
        return []
    modules = [Extension(f"shardpay.{p.stem}", [str(p.relative_to(HERE))]) for p in sources]
    try:
        return cythonize(modules, language_level=3, quiet=True)  # each .pyx states its own directives
    except Exception as err:  # noqa: BLE001 - a Cython error: install pure Python, as without a compiler
        _warn(f"Cython could not translate {', '.join(p.name for p in sources)} ({err}); "
              "shardpay installs as pure Python")
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
