"""The agent runtime: control session, data-channel pool, target dialling, reach listeners."""
