"""The portal (`runctl ui`): app.py (Starlette), data.py (queries), server.py (uvicorn), static/ (the page; uPlot 1.6.32 vendored, MIT)."""
