"""Run time: the operators a job run's tasks are (snapshot, plan, services, steps, finalize).

Imports Airflow, the core and the engine; never the web layer.
"""
