"""The MLflow registry: logging and opening models, and the model lifecycle (list, compare, promote)."""
