"""etcdbench: can one etcd watcher keep up with a large Kubernetes cluster's event rate?"""

__version__ = "0.1.0"
