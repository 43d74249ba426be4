"""preflight checks: readiness of data, models and the GPU for the research codebase."""
