"""The asyncio shell around the charger core: the only place that awaits."""
