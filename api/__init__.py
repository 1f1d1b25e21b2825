"""Image Studio HTTP API (FastAPI, ``/api/v1``)."""
