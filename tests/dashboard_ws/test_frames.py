import json

import pytest

from ems_dashboard_ws import frames
from ems_dashboard_ws.frames import Envelope


def test_json_payload_is_spliced_as_json() -> None:
    env = Envelope.from_mqtt("ems/dev1/status", b'{"v": 1, "state": "online"}')
    frame = json.loads(env.frame(retained=True))
    assert frame == {
        "type": "message",
        "topic": "ems/dev1/status",
        "payload": {"v": 1, "state": "online"},
        "retained": True,
    }


def test_text_payload_is_sent_as_string_with_flag() -> None:
    frame = json.loads(Envelope.from_mqtt("ems/dev1/x", b"hello {").frame(retained=False))
    assert frame["payload"] == "hello {"
    assert frame["raw"] is True
    assert frame["encoding"] == "utf-8"
    assert frame["retained"] is False


def test_binary_payload_is_base64() -> None:
    frame = json.loads(Envelope.from_mqtt("ems/dev1/x", b"\xff\x00").frame(retained=False))
    assert frame["raw"] is True
    assert frame["encoding"] == "base64"
    assert frame["payload"] == "/wA="


@pytest.mark.parametrize("payload", [b"NaN", b'{"x": Infinity}', b""])
def test_non_json_constants_and_empty_are_raw(payload: bytes) -> None:
    frame = json.loads(Envelope.from_mqtt("ems/dev1/x", payload).frame(retained=False))
    assert frame["raw"] is True


def test_topic_with_quotes_stays_valid_json() -> None:
    frame = json.loads(Envelope.from_mqtt('a/"b"', b"1").frame(retained=False))
    assert frame["topic"] == 'a/"b"'
    assert frame["payload"] == 1


def test_parse_subscribe_request() -> None:
    request = frames.parse_request('{"type": "subscribe", "topics": ["ems/#"]}')
    assert isinstance(request, frames.SubscribeRequest)
    assert request.topics == ["ems/#"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"type": "dance"}', "unknown frame type"),
        ('{"type": "subscribe"}', "topics"),
        ('{"type": "subscribe", "topics": []}', "topics"),
        ('{"type": "subscribe", "topics": [3]}', "topics"),
        ('{"type": "subscribe", "topics": ["a"], "extra": 1}', "extra"),
    ],
)
def test_bad_requests_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(frames.BadRequest, match=fragment):
        frames.parse_request(text)
