"""The snapshot publisher function: Firestore change events -> JSON snapshots in Cloud Storage,
and the rebuild of snapshots from Firestore."""
