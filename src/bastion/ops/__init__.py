"""What operators see: logging helpers (and, later, the audit trail, metrics and traces)."""
