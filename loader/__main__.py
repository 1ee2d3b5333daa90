"""The process entry of the `flowkit-loader` command (the console script, and `python -m
loader`).

A command builds large structures without cycles (summaries, records, plans: a few
objects per dataset), and before that it imports a hundred modules' functions and
classes; the cyclic collector's default rhythm (a young collection every 700 allocations)
traverses all of them again and again as they grow: a third of `plan --only` at 50,000
datasets (bench/scale.py), a fifth of a no-change plan's imports (bench/plan.py). Rarer
young collections keep its cost in proportion; they are set here, before the command's
first import, and only for the command's own process (a library user keeps their own).
As the process ends, the interpreter's own collections would walk every object the
command built once more, only to see them freed by their reference counts anyway (40 ms
of a no-change plan's 0.3 s): the command's objects are set aside first.
"""

import gc

GC_YOUNG_THRESHOLD = 100_000  # allocations between young collections (Python's is 700)


def main() -> None:
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    from loader.cli import main as run_command  # after the threshold: its imports count

    try:
        run_command()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
