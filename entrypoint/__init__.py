"""A container entrypoint that picks the mode, checks the queue, and runs the command.

This module is imported on web mode's fast path: it must stay free of imports.
"""

__version__ = "0.1.0"
