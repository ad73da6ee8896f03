"""EMS performance benchmarks: one command per performance goal, printing its figures."""
