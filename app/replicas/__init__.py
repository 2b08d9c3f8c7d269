"""Several guard replicas on one Postgres: registry, leases with fencing epochs, balance, manager."""
