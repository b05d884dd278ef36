"""Tools users run around the labelling job: export, evaluate, report (inspect), the demo and table maintenance. Plain functions; the click commands are in jobs.cli."""
