"""Operators' control: what an administrator can see and do (the CLI today; the admin API and pages later)."""
