"""Firestore security rules: generated from the collection schemas, checked and tested here.

`rules.generate` writes `firestore.rules` (and, through `rules.cases`, the data-driven cases of
the emulator tests, `rules/test/cases.json`) from `schemas/*.schema.json`, read through the
backend's parsed schema model with the rules' own demands (`rules.schemas`); `rules.run` runs
the tests under Google's Firestore emulator (whose compiler also checks the rules when they are
loaded).
"""
