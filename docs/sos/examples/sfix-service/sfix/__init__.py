"""sfix: similar items (a tiny example service for SOS)."""
