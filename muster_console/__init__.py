"""`muster-console`: watch the farm's live events from a terminal."""
