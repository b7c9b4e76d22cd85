"""The HTTP API: FastAPI app factory, routers, authentication and the one error mapping."""
