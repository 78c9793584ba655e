"""Shared fixtures: the two central systems (ours on `ocpp`, the node peer on `ocpp-rpc`)."""

pytest_plugins = ["csms_harness"]
