"""`muster-notificator`: desktop notifications from the dispatcher."""
