"""The worker: load settings, build the services, start the scheduler.

Equivalent to `consultant run`; kept at the top of the repository so a
process manager can run `python worker.py`.
"""

from consultant.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run"]))
