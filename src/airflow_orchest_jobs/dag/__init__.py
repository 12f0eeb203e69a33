"""Parse time: what the DAG processor runs to turn Orchest job files into DAGs.

The factory, the trigger-form params, the cron timetable and the notebook link. Imports
Airflow's authoring interface (``airflow.sdk``) and the core; never Docker or the web layer.
"""
