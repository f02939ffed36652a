"""The library's documentation: every module says what it is in its docstring, and every runnable
example (``>>>``) in a docstring runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "workflow" / "boltzflow"
MODULES = sorted(".".join(p.relative_to(LIBRARY.parent).with_suffix("").parts).removesuffix(".__init__")
                 for p in LIBRARY.rglob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.examples and test.filename and Path(test.filename).resolve().is_relative_to(LIBRARY):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed (see above)"


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_is_one_paragraph(name):
    doc = importlib.import_module(name).__doc__
    assert doc and doc.strip(), f"{name} has no module docstring"
    paragraphs = [p for p in doc.strip().split("\n\n") if p.strip()]
    assert len(paragraphs) <= 2, (f"{name}: the module docstring has {len(paragraphs)} paragraphs; say what the "
                                  "module is in one (plus the paper reference), and move details to the "
                                  "functions and classes they describe")
