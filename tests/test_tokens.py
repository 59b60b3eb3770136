"""Token codec conformance: every vector the reference implementation produced, plus round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES

from schemas import tokens as tk

VECTORS = json.loads((FIXTURES / "reference-tiny" / "token_vectors.json").read_text())


@pytest.mark.parametrize("case", VECTORS["units_to_string"], ids=lambda c: c["string"][:30])
def test_units_to_string_matches_reference(case: dict) -> None:  # type: ignore[type-arg]
    units = case["units"]
    assert (
        tk.units_to_string(units["hubert"], units.get("pitch"), units.get("style"))
        == case["string"]
    )


@pytest.mark.parametrize("case", VECTORS["string_to_units"], ids=lambda c: c["string"][:30])
def test_string_to_units_matches_reference(case: dict) -> None:  # type: ignore[type-arg]
    assert tk.string_to_units(case["string"]) == case["units"]


def test_real_example_round_trip() -> None:
    real = VECTORS["real_example"]
    units = real["units"]
    for key, value in real.items():
        if key.endswith("string") and isinstance(value, str):
            expressive = "Pi" in value
            got = tk.units_to_string(
                units["hubert"],
                units.get("pitch") if expressive else None,
                units.get("style") if expressive else None,
            )
            assert got == value, key


@pytest.mark.parametrize("name", ["text_base", "text_expressive", "speech", "arbitrary"])
def test_forbidden_tokens_match_reference(name: str) -> None:
    modality = {
        "text_base": "TEXT",
        "text_expressive": "TEXT",
        "speech": "SPEECH",
        "arbitrary": "ARBITRARY",
    }[name]
    assert (
        tk.forbidden_token_ids(modality, expressive=name == "text_expressive")
        == VECTORS["forbidden_tokens"][name]
    )


@pytest.mark.parametrize("case", VECTORS["build_prompt"], ids=lambda c: c["output_modality"])
def test_build_prompt_matches_reference(case: dict) -> None:  # type: ignore[type-arg]
    inputs = [(kind, content) for kind, content in case["inputs"]]
    assert tk.build_prompt(inputs, case["output_modality"]) == case["prompt"]


@pytest.mark.parametrize(
    "case", VECTORS["parse_speech_and_text"], ids=lambda c: c["generated"][:30]
)
def test_parse_generation_matches_reference(case: dict) -> None:  # type: ignore[type-arg]
    expected = [(content, "speech" if kind == "s" else "text") for content, kind in case["splits"]]
    assert tk.parse_generation(case["generated"]) == expected


@pytest.mark.parametrize("case", VECTORS["speech_positions"], ids=lambda c: c["prompt"][:30])
def test_speech_positions_match_reference(case: dict) -> None:  # type: ignore[type-arg]
    assert tk.last_speech_start(case["prompt"]) == case["last_speech_start"]
    assert tk.starts_with_speech(case["prompt"]) == case["starts_with_speech"]
    assert tk.ends_with_speech(case["prompt"]) == case["ends_with_speech"]


def test_token_ids_follow_the_table() -> None:
    assert tk.token_id("[Text]") == 32000 and tk.token_id("[Speech]") == 32001
    assert tk.token_id("[Hu0]") == 32002 and tk.token_id("[Hu500]") == 32502
    assert tk.token_id("[Pi0]") == 32503 and tk.token_id("[Pi63]") == 32566
    assert tk.token_id("[St0]") == 32567 and tk.token_id("[St99]") == 32666
    assert all(tk.token_id(tk.token_of(i)) == i for i in range(32000, 32667))
    for bad in ("[Hu501]", "[Pi64]", "[St100]", "[Xx1]", "Hu1"):
        with pytest.raises(ValueError):
            tk.token_id(bad)


def test_out_of_range_units_name_stream_and_position() -> None:
    with pytest.raises(ValueError, match=r"pitch unit 64 at position 2"):
        tk.units_to_string([1, 2, 3], pitch=[0, 1, 64])


def test_random_round_trips() -> None:
    """units → string → units gives the deduplicated streams back (pitch/style per Hu token)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        hubert = rng.integers(0, 501, n).repeat(rng.integers(1, 3, n))
        string = tk.units_to_string(hubert)
        dedup = [int(h) for i, h in enumerate(hubert) if i == 0 or h != hubert[i - 1]]
        assert tk.string_to_units(string) == {"hubert": dedup}
