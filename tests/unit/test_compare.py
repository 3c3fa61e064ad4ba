from __future__ import annotations

import pytest

from backend.compare import outputs_match


@pytest.mark.parametrize(("got", "want", "mode", "expected"), [
    ("1 2\n", "1 2\n", "exact", True),
    ("1 2", "1 2\n", "exact", False),
    ("1 2  \n3\n\n\n", "1 2\n3", "lines", True),
    ("1 2\r\n3\r\n", "1 2\n3\n", "lines", True),
    ("1  2\n", "1 2\n", "lines", False),          # inner whitespace counts in lines mode
    ("\n1 2\n", "1 2\n", "lines", False),         # leading blank line counts
    ("1\n2\n", "1 2", "tokens", True),
    ("1 2 3", "1 2", "tokens", False),
    ("0.3333333 x", "0.333333333 x", "float", True),
    ("0.34", "0.333333333", "float", False),
    ("1000000.5", "1000000.0", "float", True),    # relative tolerance 1e-6
    ("abc", "abd", "float", False),
    ("nan", "nan", "float", True),                # equal text
    ("inf", "1e308", "float", False),
])
def test_modes(got: str, want: str, mode: str, expected: bool) -> None:
    assert outputs_match(got, want, mode) is expected


def test_float_tolerances_are_configurable() -> None:
    assert outputs_match("1.01", "1.00", "float", abs_tol=0.02, rel_tol=0)
    assert not outputs_match("1.01", "1.00", "float", abs_tol=0.001, rel_tol=0)
    with pytest.raises(ValueError):
        outputs_match("a", "a", "fuzzy")
