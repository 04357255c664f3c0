"""Local emulators for tests and the local stack: patched Firestore and Cloud Storage.

- ``emulators/firestore_server.mjs``: the npm ``@firestore-emulator/server`` with the fixes the
  product relies on (see its header comment);
- ``emulators.storage_server``: the PyPI ``gcp-storage-emulator`` with its fixes;
- ``emulators.harness``: start / reach / stop them (used by ``tests/conftest.py`` and
  ``dev/stack.py``).
"""
