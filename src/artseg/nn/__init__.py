"""Network builders shared by methods."""
