"""Code shared by the functions: settings, clients, schemas, value encoding, queries, HTTP edge."""
