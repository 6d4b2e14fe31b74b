"""pulseboard: a real-time GraphQL API for tasks, tickets and notifications."""

__version__ = "0.1.0"
