"""The store: the run history and the files it points at. It alone knows its layout on disk
and its schema: sqlite (the ``Store`` API: runs, metrics, logs, files) and snapshot (the
content-addressed object cache and the snapshots of source directories) live here; private
makes what the store creates readable by its owner only. Backends receive the services
they need (``Store.services()``), never the store's directory."""
