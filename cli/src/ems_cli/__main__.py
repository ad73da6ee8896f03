"""``python -m ems_cli``: the ``ems`` command (used by ``ems up`` to start its children)."""

from ems_cli.main import app

app(prog_name="ems")
