"""stressor: a fault-injection stress service for log followers."""

__version__ = "0.1.0"
