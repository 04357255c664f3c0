"""Firestore security rules: generated from the collection schemas, checked and tested here.

`rules.generate` writes `firestore.rules` and the data-driven cases of the emulator tests
(`rules/test/cases.json`) from `schemas/*.schema.json`; `rules.syntax` is an offline grammar
and name check of the rules language; `rules/run.mjs` runs the tests under Google's emulator.
"""
