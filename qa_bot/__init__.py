"""qa-bot: cited answers to questions about the bulletin of Shanxi's development zones."""

__version__ = "0.1.0"
