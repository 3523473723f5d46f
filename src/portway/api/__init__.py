"""The REST API: FastAPI routers and pydantic schemas, one router per resource. No socket code."""
