"""Pure planning: settings, URLs, modes, policies and redaction, as frozen values.

Nothing in this package touches a process, a socket or a file.
"""
