"""evsectl: controller of a DC fast charger (OCPP 1.6-J charge point)."""
