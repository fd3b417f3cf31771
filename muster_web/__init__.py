"""The web dashboard: a FastAPI app, a gRPC client of the dispatcher's
services, acting with each browser user's own token (docs/dashboard.md)."""
