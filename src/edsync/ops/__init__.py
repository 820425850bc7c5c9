"""What an operator sees and runs beside the engine: metrics and health, systemd
notification, logging, the terminal UI, ``status`` and the ``demo``."""
