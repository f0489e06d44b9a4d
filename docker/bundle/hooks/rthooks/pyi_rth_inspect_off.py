"""Stands in for PyInstaller's `inspect` runtime hook: nothing to do (see ../rthooks.dat)."""
