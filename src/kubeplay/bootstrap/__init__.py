"""`kubeplay install` on the deploy node: certs, trust, hosts, nginx, registry, chrony, health checks."""
