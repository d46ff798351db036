"""Names refuse every Unicode default-ignorable code point except ZWNJ, ZWJ and the emoji variation selectors, and
the rule is the one documented in docs/security.md (DESIGN §2, §15)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ripple import InvalidNameError
from ripple.core.validate import REFUSED_NAME_RANGES, validate_key, validate_scope
from tests.conftest import ROOT, count
from tests.http.conftest import error_of
from tests.security.conftest import serving

# From the issue: these passed while their siblings were refused.
FORMERLY_ACCEPTED = [0x061C, 0x00AD, 0x180E, *range(0x206A, 0x2070), 0xE0001, 0xE0020, 0xE0041, 0xE007F]
KEPT = [0x200C, 0x200D, 0xFE0E, 0xFE0F]
# Unicode 15.1 DerivedCoreProperties.txt, Default_Ignorable_Code_Point: typed in from the standard, not from ripple.
DEFAULT_IGNORABLE = [
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
]


def refused(code: int) -> bool:
    try:
        validate_key(f"a{chr(code)}b")
    except InvalidNameError:
        return True
    return False


def test_every_default_ignorable_is_refused_but_four() -> None:
    for low, high in DEFAULT_IGNORABLE:
        for code in range(low, high + 1):
            assert refused(code) == (code not in KEPT), hex(code)


@pytest.mark.parametrize("code", FORMERLY_ACCEPTED, ids=hex)
def test_the_formerly_accepted_ones_are_refused_now(code: int) -> None:
    assert refused(code)


@given(st.integers(0, 0x10FFFF))
@settings(max_examples=count(1000, 50_000), deadline=None, database=None)
def test_refused_exactly_in_the_documented_ranges(code: int) -> None:
    assert refused(code) == any(low <= code <= high for low, high in REFUSED_NAME_RANGES)


def test_names_that_need_zwj_and_variation_selectors_still_work() -> None:
    persian_zwnj = "\u0646\u0627\u0645\u200c\u0647\u0627"
    for name in ("👨\u200d👩\u200d👧", "❤\ufe0f", "☺\ufe0e", "\u0915\u094d\u200d\u0937", persian_zwnj, "café", "日本"):
        assert validate_scope(name) == name


def test_the_docs_list_the_same_ranges() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    documented = re.findall(r"^\| `U\+([0-9A-F]{4,5})(?:\u2013U\+([0-9A-F]{4,5}))?` \|", text, re.MULTILINE)
    ranges = [(int(a, 16), int(b or a, 16)) for a, b in documented]
    assert ranges == list(REFUSED_NAME_RANGES)


async def test_rest_and_embedded_refuse_the_same(tmp_path: Path) -> None:
    async with serving(tmp_path / "n.db") as served, served.client() as client:
        for code in FORMERLY_ACCEPTED:
            for path in (f"/v1/state/s/a{chr(code)}b", f"/v1/state/a{chr(code)}b/k"):
                error_of(await client.put(path, json=1), 422, "invalid_name")
            with pytest.raises(InvalidNameError):
                await served.store.set("s", f"a{chr(code)}b", 1)
        assert (await client.put("/v1/state/s/👨\u200d👩\u200d👧", json=1)).status_code == 201
        assert served.store.head == 1
