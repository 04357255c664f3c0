"""The Cloud Functions of the dashboard backend, one package per function."""
