"""Tools users run around the labelling job: export, evaluate, report (inspect), the demo, table
maintenance and sample videos. Plain functions; their click commands are in jobs.cli."""
