"""Security overview: the seed's get_security_stats as an admin API."""
