"""The command line: parse, dispatch, print. `run(argv, out, err)` returns an exit code.

app.py      the parser, dispatch, run(argv, out, err), main
flags.py    the flags commands share (workload, network, background, target) and their RunConfig values
credentials.py  the security flags: files checked, the password read or prompted for
execute.py  the runs of watch, run and capacity on their etcd, the results saved after each
watch.py    watch, show;  run.py: run, capacity;  archive.py: compare, ls, export, plot, merge
"""

from etcdbench.cli.app import main, run

__all__ = ["main", "run"]
