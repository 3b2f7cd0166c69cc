"""Tools the run engine executes server-side (code interpreter, file search)."""
