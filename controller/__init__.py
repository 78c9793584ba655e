"""evsectl: controller of a DC fast charger (OCPP 1.6-J charge point)."""

__version__ = "0.1.0"
