"""The OS-facing runtime: the supervisor loop and everything it drives."""
