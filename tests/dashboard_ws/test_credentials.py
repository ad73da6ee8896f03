from ems_dashboard_ws.credentials import from_handshake


def test_header_bearer() -> None:
    creds = from_handshake("Bearer ems_abc", [])
    assert creds.token == "ems_abc"
    assert creds.subprotocol is None


def test_header_wins_and_protocol_still_selected() -> None:
    creds = from_handshake("bearer  tok ", ["ems.v1"])
    assert creds.token == "tok"
    assert creds.subprotocol == "ems.v1"


def test_subprotocol_bearer() -> None:
    creds = from_handshake(None, ["ems.v1", "ems.bearer.ems_xyz"])
    assert creds.token == "ems_xyz"
    assert creds.subprotocol == "ems.v1"


def test_bearer_without_ems_v1_is_refused() -> None:
    creds = from_handshake(None, ["ems.bearer.ems_xyz"])
    assert creds.token is None
    assert creds.problem and "ems.v1" in creds.problem


def test_missing_and_malformed() -> None:
    assert from_handshake(None, ["ems.v1"]).problem == "missing token"
    assert from_handshake("Basic dXNlcjpwYXNz", []).token is None
    assert from_handshake("Bearer", []).token is None


def test_token_not_in_repr() -> None:
    assert "secret123" not in repr(from_handshake("Bearer secret123", []))
