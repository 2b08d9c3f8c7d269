"""Every call the guard makes to the outside: bounded HTTP, child processes, the SSRF guard, the
Kubernetes API."""
