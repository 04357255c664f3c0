"""The Cloud Functions of the dashboard backend, one module per function."""
