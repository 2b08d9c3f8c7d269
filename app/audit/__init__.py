"""The audit log: who changed what on the control plane, when, from where, with what result."""
