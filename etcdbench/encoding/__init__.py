"""Kubernetes-shaped objects and the two storage encodings (JSON, protobuf) they are written in."""
