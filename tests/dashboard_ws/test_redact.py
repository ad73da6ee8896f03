import logging

import pytest

from ems_dashboard_ws import redact

TOKEN = "ems_" + "A1b2C3d4" * 5


@pytest.mark.parametrize(
    "line",
    [
        f"< Authorization: Bearer {TOKEN}",
        f"< Sec-WebSocket-Protocol: ems.v1, ems.bearer.{TOKEN}",
        f"token={TOKEN}",
        "< authorization: Basic dXNlcjpwYXNz",
    ],
)
def test_redact_removes_tokens(line: str) -> None:
    assert TOKEN not in redact.redact(line)
    assert "dXNlcjpwYXNz" not in redact.redact(line)


def test_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("uvicorn.error")
    redact.install()
    redact.install()
    assert sum(isinstance(f, redact.RedactTokens) for f in logger.filters) == 1
    with caplog.at_level(logging.DEBUG):
        logger.debug("< %s: %s", "Sec-WebSocket-Protocol", f"ems.v1, ems.bearer.{TOKEN}")
    assert "ems.bearer.[redacted]" in caplog.text
    assert TOKEN not in caplog.text
