"""Low-level building blocks shared by checks, notifications and healing: bounded subprocesses,
SSRF-safe outbound HTTP. Nothing here touches the database or the web framework."""
