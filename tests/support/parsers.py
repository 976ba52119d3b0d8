"""Run a module's parser tests against both implementations of AMIParser.

The compiled fast path (callcenter/ami/_speedups.pyx) runs by default; the pure
Python parser runs where it is not built. Both must give the same frames, so the
parser's tests run once with each. A missing extension fails the compiled run
unless CALLCENTER_NO_EXTENSIONS says it was left out on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from callcenter.ami import parser as parser_module


@pytest.fixture(autouse=True, scope="module", params=["compiled", "pure-python"])
def parser_implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    compiled = request.param == "compiled"
    if compiled and parser_module._CompiledCrlf is None:
        if os.environ.get("CALLCENTER_NO_EXTENSIONS"):
            pytest.skip("callcenter.ami._speedups left out (CALLCENTER_NO_EXTENSIONS)")
        pytest.fail("callcenter.ami._speedups is not built: run `make venv` (needs a C compiler)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parser_module, "COMPILED_AVAILABLE", compiled)
        assert parser_module.AMIParser().compiled is compiled
        yield request.param
