"""An emulated network between etcdbench and etcd: a user-space delay proxy (see delay.py, proxy.py)."""
