"""Pure core: understands Orchest projects. Never imports Airflow (a test checks it)."""
