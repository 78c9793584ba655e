"""The OCPP adapter: the only package that imports ``ocpp`` and ``websockets``."""
