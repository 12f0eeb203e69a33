"""Moving an Orchest installation over: what Orchest kept, mapped to files and Variables.

Pure: it takes plain rows (read by ``airflow_orchest_jobs.orchest_import`` from Orchest's
database or HTTP API) and project folders, and returns a plan; writing is elsewhere.
"""
