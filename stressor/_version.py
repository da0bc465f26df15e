"""The version of stressor, in a module of its own so every module can import it early."""

__version__ = "0.1.0"
