"""EMS command line: ems up, migrate, broker, platform, dashboard, device, token."""
