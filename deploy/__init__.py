"""Deployment to Google Cloud (`deploy/deploy.py`, run by `make deploy`); never deployed itself."""
