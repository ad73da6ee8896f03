"""``python -m ems_device``: the same command line as the ``ems-device`` script."""

from ems_device.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
