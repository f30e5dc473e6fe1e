"""Run by tests/integration/test_runner.py in this directory with an unmodified flamepy 0.6.0.

It prints one JSON object with what each check saw.
"""

from __future__ import annotations

import json
import sys

import demo_tasks
import flamepy
from flamepy.runner import Runner

app = sys.argv[1]
seen: dict[str, object] = {}
with Runner(app) as rr:
    seen["registered"] = flamepy.get_application(app) is not None

    square = rr.service(demo_tasks.square)
    seen["function_100"] = rr.get([square(i) for i in range(100)])

    counter = rr.service(demo_tasks.Counter())
    seen["instance_state"] = [counter.add(n).get() for n in (1, 2, 3)]

    greeter = rr.service(demo_tasks.Greeter)
    seen["class"] = greeter.greet("flame").get()

    shared = rr.put_object([1, 2, 3, 4])
    summed = rr.service(demo_tasks.total)
    first = summed(shared)  # an ObjectRef argument
    seen["objectref_arg"] = first.get()
    ref = first.ref()  # a result as an ObjectRef ...
    seen["objectref_result_type"] = type(ref).__name__
    seen["objectref_result"] = flamepy.get_object(ref)
    seen["objectfuture_arg"] = square(first).get()  # ... and an ObjectFuture passed on

    slow = rr.service(demo_tasks.slow)
    futures = [slow(i, 0.3 * (3 - i)) for i in range(3)]
    rr.wait(futures)
    seen["wait"] = rr.get(futures)
    seen["select"] = sorted(f.get() for f in rr.select([slow(i, 0.05) for i in range(4)]))

    seen["dependency"] = rr.service(demo_tasks.table)([[1, 2], [3, 4]]).get()
    seen["dependency_file"] = rr.service(demo_tasks.where_is_tabulate)().get()

    explode = rr.service(demo_tasks.explode)
    try:
        explode(7).get()
        seen["exception"] = None
    except Exception as exc:
        seen["exception"] = f"{type(exc).__name__}: {exc}"

seen["unregistered"] = flamepy.get_application(app) is None
print("RESULT " + json.dumps(seen))
