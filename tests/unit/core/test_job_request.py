import pytest

from core.errors import InvalidArgument
from core.job_request import MAX_SEED, request_json_schema, validate_request
from core.settings import RequestLimits

LIMITS = RequestLimits(min_size=64, max_size=512, default_size=64, default_steps=20)


def fields_of(err: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {d.field: d.message for d in err.value.details}


def test_minimal_request_is_normalized_with_defaults_and_a_seed() -> None:
    request = validate_request({"prompt": "a red fox"}, LIMITS)
    assert request["width"] == request["height"] == 64
    assert request["num_inference_steps"] == 20
    assert request["num_images"] == 1
    assert request["output_format"] == "png"
    assert 0 <= request["seed"] <= MAX_SEED


def test_given_seed_is_kept() -> None:
    assert validate_request({"prompt": "x", "seed": 7}, LIMITS)["seed"] == 7


def test_every_bad_field_is_named_with_its_value() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request(
            {
                "prompt": "",
                "width": 500,
                "height": "64",
                "num_images": 9,
                "seed": -1,
                "webhook": "http://example.test/hook",
                "scheduler": "warp",
                "output_format": "gif",
                "colour": "blue",
            },
            LIMITS,
        )
    fields = fields_of(err)
    assert set(fields) == {
        "prompt",
        "width",
        "height",
        "num_images",
        "seed",
        "webhook",
        "scheduler",
        "output_format",
        "colour",
    }
    assert "multiple of 8" in fields["width"] and "500" in fields["width"]
    assert fields["colour"] == "is not a known field"
    assert "https" in fields["webhook"]


def test_missing_prompt_and_limits_from_settings() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"width": 1024}, LIMITS)
    fields = fields_of(err)
    assert fields["prompt"] == "is required"
    assert "512" in fields["width"]


def test_blank_prompt_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "   "}, LIMITS)
    assert "prompt" in fields_of(err)


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "num_images": True}, LIMITS)
    assert "num_images" in fields_of(err)


def test_metadata_size_is_bounded() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request({"prompt": "x", "metadata": {"k": "v" * 5000}}, LIMITS)
    assert "bytes" in fields_of(err)["metadata"]
    ok = validate_request({"prompt": "x", "metadata": {"order": 12, "tag": "a"}}, LIMITS)
    assert ok["metadata"] == {"order": 12, "tag": "a"}


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_request(["prompt"], LIMITS)
    assert fields_of(err) == {"(body)": "expected an object, got list"}


def test_schema_reflects_the_limits() -> None:
    schema = request_json_schema(LIMITS)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]
    width = schema["properties"]["width"]
    assert (width["minimum"], width["maximum"], width["multipleOf"]) == (64, 512, 8)
    wider = request_json_schema(RequestLimits(max_size=1024))
    assert wider["properties"]["width"]["maximum"] == 1024
