"""Category names: canonical spelling, exact names first, and the one typo policy (``close_matches``)."""

from __future__ import annotations

import pytest

from riad_agent.errors import UnknownCategoryError
from riad_agent.knowledge.categories import canonical_name, likely_typos, resolve_category

KNOWN = ["mvtec/hazelnut", "mvtec/screw", "synthetic/washer", "visa/candle", "visa/screw"]


def _error(name: str, known: list[str] = KNOWN) -> UnknownCategoryError:
    with pytest.raises(UnknownCategoryError) as caught:
        resolve_category(name, known)
    return caught.value


def test_canonical_spelling() -> None:
    assert canonical_name(" MVTec-AD/Screw Bag ") == "mvtec/screw_bag"
    assert canonical_name("Metal-Nut") == "metal_nut"


def test_known_names_resolve() -> None:
    assert resolve_category("mvtec/hazelnut", KNOWN) == "mvtec/hazelnut"
    assert resolve_category("Hazelnut", KNOWN) == "mvtec/hazelnut"
    assert resolve_category("MVTec-AD/screw", KNOWN) == "mvtec/screw"


def test_a_typo_is_an_error_with_close_matches() -> None:
    error = _error("hazlenut")
    assert error.close_matches == ["mvtec/hazelnut"]
    assert "close matches: mvtec/hazelnut" in error.message
    assert _error("hazelnutt").close_matches == ["mvtec/hazelnut"]
    assert _error("visa/hazelnut").close_matches == ["mvtec/hazelnut"]  # right name, wrong dataset


def test_a_name_close_to_nothing_is_a_new_product() -> None:
    error = _error("gearbox")
    assert error.close_matches == []
    assert "riad kb list" in error.message
    assert likely_typos("turbine_blade", KNOWN) == []


def test_an_ambiguous_short_name_lists_its_categories() -> None:
    error = _error("screw")
    assert error.close_matches == ["mvtec/screw", "visa/screw"]
    assert "ambiguous" in error.message


def test_an_empty_base_has_no_close_matches() -> None:
    error = _error("hazelnut", [])
    assert error.close_matches == [] and "empty" in error.message


def test_the_message_may_suggest_more_than_the_typo_policy_flags() -> None:
    # 0.6 <= similarity < 0.75: suggested in the message, but not a typo
    error = _error("washing", ["synthetic/washer"])
    assert "close matches: synthetic/washer" in error.message
    assert error.close_matches == []
