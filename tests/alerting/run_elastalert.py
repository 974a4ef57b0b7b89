"""Run every ElastAlert 2 rule once over a fixed time range, the way ``elastalert --start S --end E`` does.

Executed by the Python of ElastAlert's own virtual environment (not the project's), with the arguments
``CONFIG START END``. ``elastalert --start/--end`` hands the rules to a scheduler whose first run is one
``run_every`` later and exits when the next run would pass ``--end``, so over a range in the past it
exits before any rule runs. This script makes the same ``ElastAlerter`` (the same configuration and
rule loading, with ``--start`` so a new-term rule learns its terms from before the range) and calls
ElastAlert's own ``run_all_rules`` once, which is what the scheduler would call: each rule runs from
START to END in ElastAlert's segments, and its alerters really send.
"""

import sys

from elastalert.elastalert import ElastAlerter
from elastalert.util import ts_to_dt

config, start, end = sys.argv[1:4]
alerter = ElastAlerter(["--config", config, "--start", start, "--end", end, "--verbose", "--pin_rules"])
for rule in alerter.rules:
    rule["initial_starttime"] = ts_to_dt(start)
alerter.run_all_rules()
