"""Operator commands: `python -m ops <command>` (migrate, rebuild, doctor, admin).

They import the functions; the functions never import them, and the deploy does not upload them.
"""
