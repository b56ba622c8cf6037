"""``fundiff report``: every Part A and Part B deliverable, run (or reused) and written up as one HTML page."""
