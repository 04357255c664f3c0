"""Conformance tests: the Firestore and Cloud Storage behaviour the product relies on."""
