"""Local development and the embedded default (`make run`)."""

from .base import *  # noqa: F403
