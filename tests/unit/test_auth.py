"""Who may do what: per-session audio and read tokens, the deployment's API key, clear refusals."""

from __future__ import annotations

import pytest

from common import auth
from common.settings import Settings

API_KEY = "k" * 12 + "-test-key-0123"

# --- the pure checks ------------------------------------------------------------------------------


def test_each_token_grants_only_its_scope() -> None:
    mine, other = auth.issue(), auth.issue()
    stored = mine.hashes()
    assert auth.check(mine.audio, auth.Scope.AUDIO, stored, None) is None
    assert auth.check(mine.audio, auth.Scope.READ, stored, None) is None
    assert auth.check(mine.read, auth.Scope.READ, stored, None) is None
    assert auth.check(mine.read, auth.Scope.AUDIO, stored, None) is not None  # a display cannot send audio
    for stranger in (other.audio, other.read, "", None, "x" * 100_000, mine.audio + " "):
        assert auth.check(stranger, auth.Scope.READ, stored, None) is not None
    assert auth.check(API_KEY, auth.Scope.AUDIO, stored, API_KEY) is None
    assert auth.check(API_KEY, auth.Scope.AUDIO, stored, None) is not None  # no key configured: no key


def test_a_refusal_does_not_tell_whether_the_session_exists() -> None:
    mine = auth.issue()
    wrong_token = auth.check(auth.new_token(), auth.Scope.READ, mine.hashes(), None)
    no_session = auth.check(auth.new_token(), auth.Scope.READ, {}, None)
    assert wrong_token == no_session


def test_tokens_are_long_random_and_stored_only_as_hashes() -> None:
    tokens = {auth.new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 32 for t in tokens)
    issued = auth.issue()
    assert issued.audio not in issued.hashes().values() and issued.read not in issued.hashes().values()
    assert auth.bearer("Bearer abc") == "abc" and auth.bearer("Basic abc") is None and auth.bearer("") is None


@pytest.mark.parametrize("key", ["short", "has a space in it ok", "tab\tinside-the-key-0123"])
def test_a_weak_api_key_is_refused_at_start_up(key: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="api_key"):
        Settings(api_key=key)
    assert Settings(api_key="").api_key is None
    assert API_KEY not in repr(Settings(api_key=API_KEY))  # never shown in logs or reprs


# --- the services, with an API key ------------------------------------------------------------------
