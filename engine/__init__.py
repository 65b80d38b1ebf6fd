"""disparo: outbound orchestration engine for conversational bots."""

__version__ = "0.1.0"
