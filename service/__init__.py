"""HTTP inference service (FastAPI + uvicorn).

Owns the settings, the HTTP schemas, the model repository that reads artifacts, the inference
engine (batching, device placement, per-request compute report) and metrics. May import
``models`` and the serving dependencies (fastapi, uvicorn, pydantic); never imports ``training``
or ``loadtest``, so a serving image needs no training dependencies.
"""
