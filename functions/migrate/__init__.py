"""The migrate function: legacy JSON into Firestore (runs, sources, the batch writer, reports),
its run views and the status checks the dashboard shows."""
