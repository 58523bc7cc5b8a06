"""A token's ``exp`` comes from the vendor's answer: whatever it holds, the
expiry is a number the token store can use, never an exception."""

from __future__ import annotations

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.tokens.store import MAX_BELIEVED_LIFETIMES, expiry_ms

NOW_MS = 1_800_000_000_000
TTL_S = 3600.0
FALLBACK = NOW_MS + round(TTL_S * 1000)


def _token(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "the-vendor-signs-this-not-us-0123456789", algorithm="HS256")


def test_a_believable_exp_is_taken_as_it_is() -> None:
    exp_s = NOW_MS / 1000 + 1800
    assert expiry_ms(_token({"exp": exp_s}), TTL_S, NOW_MS) == round(exp_s * 1000)


def test_an_exp_past_belief_or_past_floats_falls_back_to_the_configured_lifetime() -> None:
    too_far = NOW_MS / 1000 + (MAX_BELIEVED_LIFETIMES + 1) * TTL_S
    for exp in (1e308, too_far, "soon", None):
        assert expiry_ms(_token({"exp": exp}), TTL_S, NOW_MS) == FALLBACK, exp
    assert expiry_ms("not a token at all", TTL_S, NOW_MS) == FALLBACK


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    exp=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.text(max_size=20),
        st.none(),
        st.booleans(),
    )
)
def test_any_exp_gives_an_expiry_within_belief(exp: object) -> None:
    got = expiry_ms(_token({"exp": exp}), TTL_S, NOW_MS)
    assert isinstance(got, int)
    assert got - NOW_MS <= MAX_BELIEVED_LIFETIMES * TTL_S * 1000
