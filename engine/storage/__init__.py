"""Storage: image files, a user's gallery, and short-lived results of unstored jobs."""
