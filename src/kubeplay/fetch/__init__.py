"""HTTP downloads (resume, verify, bounded retries, parallel) and an OCI distribution client."""
