"""EMS identity: tokens (hashed), roles, ordered ACL rules, one engine for every door."""
