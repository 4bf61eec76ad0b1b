"""``make bench``: the real service driven the way Entra drives it (``python -m bench.run``)."""
