"""Rig control: the daemon's local control socket and its client (``evsectl sim``/``status``)."""
