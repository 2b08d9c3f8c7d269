"""``config audit`` on outbound allowlist networks of both IP versions: a network holding a whole
private range is high, a wide private one medium; comparing an IPv4 entry with an IPv6 range (or the
reverse) is never an error."""

from app.config.settings import Settings
from app.security.audit import audit_settings


def test_allowlist_ranges_of_both_ip_versions():
    entries = ["fc00::/6", "10.0.0.0/7", "fd00::/8", "192.168.1.0/24", "2001:db8::/64", "hooks.example.com"]
    settings = Settings(
        security={"secret_key": "k3y-Zq8wX2vN5pL7rT9yB4mC6dF1gH0jS-extra", "ssrf_allowlist": entries}
    )
    found = {
        f.path: f.severity for f in audit_settings(settings) if f.path.startswith("security.ssrf_allowlist")
    }
    assert found == {
        "security.ssrf_allowlist[0]": "high",  # holds fc00::/7
        "security.ssrf_allowlist[1]": "high",  # holds 10.0.0.0/8
        "security.ssrf_allowlist[2]": "medium",  # inside fc00::/7, but a /8
    }
