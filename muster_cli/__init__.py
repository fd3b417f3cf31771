"""`muster`: the farm from a shell (docs/cli.md)."""
