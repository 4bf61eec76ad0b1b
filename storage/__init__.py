"""Document storage for Proware: knows documents and indexes, not SCIM and not HTTP."""
