import pytest

from core import json_input


def test_plain_json_and_surrogate_pairs_decode() -> None:
    assert json_input.loads('{"a": ["\\ud83d\\ude00", 1, 2.5, null]}') == {"a": ["\U0001f600", 1, 2.5, None]}


@pytest.mark.parametrize(
    "text",
    ['"\\ud800"', '{"\\udfff": 1}', '{"a": [{"b": "x\\ud83dy"}]}'],
)
def test_an_escaped_lone_surrogate_anywhere_is_refused(text: str) -> None:
    # Valid JSON syntax that names no character: Firestore (any UTF-8 encoder) cannot store it.
    with pytest.raises(ValueError, match="lone surrogate"):
        json_input.loads(text)


@pytest.mark.parametrize(("text", "says"), [("NaN", "NaN"), ("1e400", "out of range"), ("[" * 100_000, "deeply")])
def test_json_a_client_cannot_rely_on_is_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        json_input.loads(text)
