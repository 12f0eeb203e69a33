"""``airflow-orchest-jobs import``: read an Orchest installation (its PostgreSQL or its
HTTP API) and write what the pure mapping (``core.importer``) planned."""
