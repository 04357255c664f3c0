"""Local emulators for tests, benchmarks and the local stack.

- Firestore is Google's own emulator (the gcloud component ``cloud-firestore-emulator``),
  found and started by ``emulators.harness``;
- ``emulators.storage_server``: the PyPI ``gcp-storage-emulator`` with its fixes (Google's
  Storage emulator cannot be downloaded here);
- ``emulators.meter``: a gRPC proxy that counts the document reads Firestore would bill;
- ``emulators.harness``: start / reach / stop them, load rules, register triggers (used by
  ``tests/conftest.py``, the benchmarks, ``rules.run`` and ``dev/stack.py``).
"""
