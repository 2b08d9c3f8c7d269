"""Authentication (JWT, argon2 passwords, login throttling) and role-based permissions."""
