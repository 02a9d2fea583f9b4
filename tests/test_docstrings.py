"""Every public function and class is documented; every algorithm carries its maths."""

import importlib
import inspect
import pkgutil

import pytest

import downhill


def public_modules():
    # subpackages too (downhill.algorithms and its modules)
    names = ["downhill"] + [m.name for m in pkgutil.walk_packages(downhill.__path__, "downhill.")
                            if not m.name.rsplit(".", 1)[-1].startswith("_")]
    assert "downhill.algorithms.adam" in names
    return [importlib.import_module(n) for n in names]


def public_objects():
    for module in public_modules():
        assert module.__doc__, f"module {module.__name__} has no docstring"
        assert hasattr(module, "__all__"), f"module {module.__name__} has no __all__"
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, property):
                        yield f"{module.__name__}.{name}.{attr}", value.fget
                    elif inspect.isfunction(getattr(value, "__func__", value)):
                        yield f"{module.__name__}.{name}.{attr}", getattr(value, "__func__", value)


def test_every_public_item_has_a_docstring():
    missing = [name for name, obj in public_objects() if not (obj.__doc__ or "").strip()]
    assert not missing, f"undocumented: {missing}"


def test_documented_functions_describe_their_parameters():
    """numpydoc: a callable taking arguments has a Parameters section."""
    lacking = []
    for name, obj in public_objects():
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            params = [p for p in inspect.signature(target).parameters
                      if p not in ("self", "cls")]
        except (TypeError, ValueError):
            continue
        if inspect.isclass(obj) and (target is object.__init__
                                     or issubclass(obj, BaseException)):
            continue
        if params and "Parameters\n" not in (obj.__doc__ or ""):
            lacking.append(name)
    assert not lacking, f"no Parameters section: {lacking}"


@pytest.mark.parametrize("name", sorted(downhill.ALGORITHMS))
def test_algorithm_docstring_has_equations_and_references(name):
    doc = downhill.ALGORITHMS[name].__doc__
    assert ".. math::" in doc
    assert "References\n" in doc
    for hyper in vars(downhill.ALGORITHMS[name]).get("HYPERS", ()):
        assert hyper.name in doc, f"{name} does not document {hyper.name}"
