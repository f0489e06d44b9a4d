"""The command line: click commands, and the text and JSON they print."""
