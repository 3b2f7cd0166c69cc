"""assistd: the OpenAI Assistants API v2 on local models."""

__version__ = "0.1.0"
