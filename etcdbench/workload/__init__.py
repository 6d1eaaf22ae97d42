"""Writers (open-loop schedule), the watcher, and the event accounting that joins them."""
