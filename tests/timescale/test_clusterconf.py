"""Pure logic of the embedded cluster's configuration."""

from __future__ import annotations

from pathlib import Path

from ems_timescale import clusterconf


def test_socket_lives_in_the_data_dir() -> None:
    assert clusterconf.socket_dir_for(Path("/tmp/ems-pg-x"), 5432) == "/tmp/ems-pg-x"


def test_too_long_a_path_gets_no_socket() -> None:
    assert clusterconf.socket_dir_for(Path("/tmp/" + "d" * 120), 5432) == ""


def test_durability_follows_the_flag() -> None:
    durable = clusterconf.settings_for(port=1, socket_dir="", durable=True)
    throwaway = clusterconf.settings_for(port=1, socket_dir="", durable=False)
    assert "fsync" not in durable
    assert (throwaway["fsync"], throwaway["synchronous_commit"], throwaway["full_page_writes"]) == (
        "off",
        "off",
        "off",
    )


def test_extra_settings_win() -> None:
    settings = clusterconf.settings_for(
        port=1, socket_dir="", durable=True, extra={"shared_buffers": "64MB"}
    )
    assert settings["shared_buffers"] == "64MB"


def test_values_are_quoted() -> None:
    text = clusterconf.render({"log_line_prefix": "it's %m \\ "})
    assert "log_line_prefix = 'it''s %m \\\\ '" in text
