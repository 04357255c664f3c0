"""Deployment to Google Cloud (`make deploy`, docs/deploy.md); never uploaded itself."""
