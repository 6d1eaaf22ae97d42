"""client_vs_go.py's sections, one module per job; each section adds its rows and returns its figures."""
