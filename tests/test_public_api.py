"""Every library subpackage states its public names in ``__all__``, and each one exists."""

import importlib
from pathlib import Path

import pytest

import kexue

PACKAGE = Path(kexue.__file__).resolve().parent
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")
                     if p.parent.name != "experiments")  # experiments: a registry, no API


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_declares_and_exports_its_public_names(name):
    module = importlib.import_module(f"kexue.{name}")
    assert hasattr(module, "__all__"), f"kexue.{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"kexue.{name}.__all__ names what it does not define: {missing}"
    assert len(set(module.__all__)) == len(module.__all__)
