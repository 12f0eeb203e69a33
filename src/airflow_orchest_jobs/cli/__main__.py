"""``python -m airflow_orchest_jobs.cli``: the ``airflow-orchest-jobs`` command."""

import sys

from . import main

sys.exit(main())
