"""The push policy hook script (run by path by git, never imported)."""
