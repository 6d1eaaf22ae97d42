"""etcd API backends. Every v2/v3 difference lives in this package."""
